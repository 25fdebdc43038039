"""Request limits: a body-size cap (413) as ASGI middleware, and a per-key token bucket (429).

>>> bucket = RateLimiter(rate=2, window=60.0)
>>> [bucket.allow("k", now=0.0)[0] for _ in range(3)]
[True, True, False]
>>> bucket.allow("k", now=30.0)[0]  # one token refilled after half the window
True
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any


class RateLimiter:
    """At most ``rate`` requests per ``window`` seconds per key, with bursts up to ``rate``: a token
    bucket that refills continuously. :meth:`allow` returns (allowed, seconds until the next token)."""

    def __init__(self, rate: int, window: float) -> None:
        self.rate = rate
        self.window = window
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> tuple[bool, float]:
        """Take a token for ``key`` if one is left."""
        now = time.monotonic() if now is None else now
        per_second = self.rate / self.window
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.rate), now))
            tokens = min(float(self.rate), tokens + (now - last) * per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / per_second


def error_body(status: int, message: str, type_: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error the service returns, in the OpenAI shape (so OpenAI clients show the
    message): ``{"error": {"message", "type", "code", ...}}``.

    >>> error_body(404, "no session 's-1'", "not_found")
    {'error': {'message': "no session 's-1'", 'type': 'not_found', 'code': 404}}
    """
    return {"error": {"message": message, "type": type_, "code": status, **extra}}


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413, before any route reads them: by the
    declared Content-Length when there is one, else by counting the bytes as they arrive (a chunked
    upload is read at most ``max_bytes + 1`` bytes far)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Any, size: str) -> None:
        body = json.dumps(error_body(
            413, f"request body is {size}, over the limit of {self.max_bytes} bytes; send less (split the "
            "request, or trim the messages)", "request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length > self.max_bytes:
                await self._reject(send, f"{length} bytes")
                return
            if length >= 0:
                await self.app(scope, receive, send)
                return
        # No usable Content-Length: buffer the body up to the limit, then replay it.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._reject(send, f"more than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
