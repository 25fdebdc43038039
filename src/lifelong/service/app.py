"""The HTTP service: a FastAPI app over :class:`~lifelong.service.core.Service`.

Every route under ``/v1`` needs ``Authorization: Bearer <API key>``; the key decides the tenant, and a
tenant only ever sees its own sessions, traces, feedback, memory and ledger refs (another tenant's are
answered 404, as if they did not exist). Errors come back as ``{"error": {"message", "type", "code"}}``,
the shape OpenAI clients read. ``/v1/chat/completions`` speaks the OpenAI chat completions protocol
(streaming too), so an existing client gains learned context by changing its base URL.

>>> import tempfile
>>> from fastapi.testclient import TestClient
>>> from lifelong.models.chat import ScriptedChat
>>> app = create_app(ServiceConfig(tempfile.mkdtemp(), chat=ScriptedChat(["Hello!"]), keys={"ll-test-key": "acme"}))
>>> client = TestClient(app)
>>> auth = {"Authorization": "Bearer ll-test-key"}
>>> session = client.post("/v1/sessions", json={"user": "alice"}, headers=auth).json()
>>> client.post(f"/v1/sessions/{session['id']}/chat", json={"message": "hi"}, headers=auth).json()["reply"]
'Hello!'
>>> client.get("/v1/sessions/" + session["id"]).json()["error"]["type"]  # no key
'authentication_error'
>>> body = {"model": "any", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
>>> with client.stream("POST", "/v1/chat/completions", json=body, headers=auth) as r:
...     events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
>>> [json.loads(e)["choices"][0]["delta"] for e in events[:-1]], events[-1]
([{'role': 'assistant', 'content': ''}, {'content': 'Hello!'}, {}], '[DONE]')
"""


# No `from __future__ import annotations` here: FastAPI must resolve the route annotations, and `Tenant`
# is local to create_app.
import itertools
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from lifelong.context import op_from_dict
from lifelong.core.errors import LifelongError
from lifelong.service.config import ServiceConfig
from lifelong.service.core import CompletionResult, CompletionStream, Service
from lifelong.service.dashboard import install_dashboard
from lifelong.service.errors import ApiError, BadRequest, NotFound, RateLimited, Unauthorized, status_for
from lifelong.service.limits import BodyLimitMiddleware, RateLimiter, error_body
from lifelong.service.schemas import (
    ChatCompletionRequest,
    ChatRequest,
    Feedback,
    MemoryOps,
    RollbackRequest,
    SessionCreate,
)
from lifelong.service.state import hash_key

_log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An API key of your tenant: `Authorization: Bearer <key>`.")


def _hit(h: Any) -> dict[str, Any]:
    return {"item": h.item.to_dict(), "score": h.score, "relevance": h.relevance, "dense": h.dense, "bm25": h.bm25,
            "recency": h.recency, "utility": h.utility, "via": h.via}


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more + ". See the request schema at /docs"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"error": {...}}`` with a message that says what to fix."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.message, err.type, **err.extra), err.status, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = list(err.errors())
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            detail = (bad_json[0].get("ctx") or {}).get("error", "")
            message = f"the request body is not valid JSON ({detail}); send a JSON object with Content-Type: application/json"
            return JSONResponse(error_body(400, message, "invalid_json"), 400)
        content_type = request.headers.get("content-type", "")
        if content_type and "json" not in content_type and any(e.get("loc", ("",))[0] == "body" for e in errors):
            message = f"the request body must be JSON, sent with Content-Type: application/json (got {content_type!r})"
            return JSONResponse(error_body(400, message, "invalid_content_type"), 400)
        return JSONResponse(error_body(422, _validation_message(errors), "invalid_request_error",
                                       details=jsonable_encoder(errors, custom_encoder={Exception: str})), 422)

    @app.exception_handler(LifelongError)
    async def _lifelong(request: Request, err: LifelongError) -> JSONResponse:
        status = status_for(err)
        return JSONResponse(error_body(status, str(err), type(err).__name__), status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = str(err.detail)
        if err.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; the routes are listed at /docs"
        return JSONResponse(error_body(err.status_code, message, "http_error"), err.status_code,
                            getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception) -> JSONResponse:
        message = (f"internal error ({type(err).__name__}); nothing acknowledged before it is lost. "
                   "Retry, and report it if it persists")
        return JSONResponse(error_body(500, message, "internal_error"), 500)


def _completion_body(result: CompletionResult, model: str, created: int) -> dict[str, Any]:
    trace = result.trace
    return {
        "id": "chatcmpl-" + trace.id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.completion.text},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                  "total_tokens": result.prompt_tokens + result.completion_tokens},
        "lifelong": {"trace_id": trace.id, "session_id": trace.session,
                     "context_ids": list(result.context.ids) if result.context else []},
    }


def _sse(stream: CompletionStream, created: int, include_usage: bool) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events for a stream: a role delta (with lifelong's trace id and
    context ids), a content delta for each piece as the backend produces it, a final chunk with
    ``finish_reason``, optionally the usage, then ``[DONE]``. A backend that fails or stalls mid-stream
    ends it with an error event ``{"error": {...}}`` (what OpenAI clients raise as an error) and
    ``[DONE]``. Each piece is awaited on a worker thread, so the event loop never blocks on the backend."""
    base = {"id": "chatcmpl-" + stream.trace_id, "object": "chat.completion.chunk", "created": created,
            "model": stream.model}

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return "data: " + json.dumps({**base, "choices": choices, **extra}) + "\n\n"

    async def events() -> AsyncIterator[str]:
        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                    lifelong={"trace_id": stream.trace_id, "session_id": stream.session_id,
                              "context_ids": list(stream.context.ids) if stream.context else []})
        try:
            while True:
                piece = await anyio.to_thread.run_sync(next, stream, None, abandon_on_cancel=True)
                if piece is None:
                    break
                yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        except ApiError as err:
            yield "data: " + json.dumps(error_body(err.status, err.message, err.type, **err.extra)) + "\n\n"
            yield "data: [DONE]\n\n"
            return
        except Exception as err:  # the trace could not be stored: say so rather than end silently
            _log.exception("streaming trace %s failed", stream.trace_id)
            message = f"internal error ({type(err).__name__}) while streaming; the answer may not be recorded"
            yield "data: " + json.dumps(error_body(500, message, "internal_error")) + "\n\n"
            yield "data: [DONE]\n\n"
            return
        yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        result = stream.result
        if include_usage and result is not None:
            yield event([], usage={"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                                   "total_tokens": result.prompt_tokens + result.completion_tokens})
        yield "data: [DONE]\n\n"

    return events()


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response for a :class:`CompletionStream` that closes the stream when the
    response ends, however it ends: after ``[DONE]`` that does nothing, but a client that went away
    mid-answer leaves a trace with the text sent so far and status ``disconnected``, and the backend is
    told to stop."""

    def __init__(self, stream: CompletionStream, content: AsyncIterator[str], headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})
        self.stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.stream.close)


def create_app(config: ServiceConfig | Service) -> FastAPI:
    """The FastAPI app for a configuration (or an already open :class:`Service`, which the caller then
    closes). Serve it with uvicorn, or see :func:`lifelong.service.serve`."""
    service = config if isinstance(config, Service) else Service(config)
    owns = not isinstance(config, Service)
    cfg = service.config
    limiter = RateLimiter(cfg.rate_limit, cfg.rate_window) if cfg.rate_limit else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns:
            service.close()

    app = FastAPI(
        title="lifelong",
        version="0.1.0",
        summary="Continual learning after deployment: sessions, feedback, memory, the ledger, and an "
                "OpenAI-compatible endpoint that adds what was learned.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    install_error_handlers(app)

    def tenant_of(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
        if creds is None or not creds.credentials:
            raise Unauthorized("missing API key: send the header 'Authorization: Bearer <your key>'",
                               headers={"WWW-Authenticate": "Bearer"})
        tenant = service.tenant_for_key(creds.credentials)
        if tenant is None:
            raise Unauthorized("unknown API key; check it, or ask the operator for a key of your tenant",
                               headers={"WWW-Authenticate": "Bearer"})
        if limiter is not None:
            allowed, wait = limiter.allow(hash_key(creds.credentials))
            if not allowed:
                retry = max(1, math.ceil(wait))
                raise RateLimited(f"rate limit of {cfg.rate_limit} requests per {cfg.rate_window:g} s exceeded for "
                                  f"this key; retry in {retry} s", headers={"Retry-After": str(retry)})
        return tenant

    Tenant = Annotated[str, Depends(tenant_of)]

    # ------------------------------------------------------------------ health
    @app.get("/health", tags=["service"], summary="Liveness (no key needed)")
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(cfg.backends)}

    # ------------------------------------------------------------------ sessions
    @app.post("/v1/sessions", status_code=201, tags=["sessions"], summary="Open a session for a user")
    def create_session(tenant: Tenant, body: SessionCreate | None = None) -> dict[str, Any]:
        body = body or SessionCreate()
        return service.create_session(tenant, body.user, body.meta).to_dict()

    @app.get("/v1/sessions/{session_id}", tags=["sessions"], summary="A session")
    def get_session(tenant: Tenant, session_id: str) -> dict[str, Any]:
        return service.session(tenant, session_id).to_dict()

    @app.post("/v1/sessions/{session_id}/end", tags=["sessions"], summary="End a session (idempotent)")
    def end_session(tenant: Tenant, session_id: str) -> dict[str, Any]:
        return service.end_session(tenant, session_id).to_dict()

    @app.post("/v1/sessions/{session_id}/chat", tags=["sessions"], summary="One chat turn in a session")
    def chat(tenant: Tenant, session_id: str, body: ChatRequest) -> dict[str, Any]:
        result = service.chat(tenant, session_id, body.message, model=body.model, max_tokens=body.max_tokens,
                              temperature=body.temperature, seed=body.seed)
        return {"reply": result.completion.text, "trace_id": result.trace.id, "session_id": session_id,
                "model": result.trace.model, "context_ids": list(result.context.ids) if result.context else []}

    @app.get("/v1/sessions/{session_id}/traces", tags=["sessions"], summary="A session's traces, newest first")
    def session_traces(tenant: Tenant, session_id: str,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        service.session(tenant, session_id)
        return [t.to_dict() for t in service.db.traces(tenant, session_id, limit=limit)]

    @app.get("/v1/traces/{trace_id}", tags=["sessions"], summary="One trace")
    def get_trace(tenant: Tenant, trace_id: str) -> dict[str, Any]:
        return service.trace(tenant, trace_id).to_dict()

    # ------------------------------------------------------------------ feedback
    @app.post("/v1/feedback", status_code=201, tags=["feedback"],
              summary="Record feedback (acknowledged once it is in the ledger)")
    def post_feedback(tenant: Tenant, body: Annotated[Feedback, Body()]) -> dict[str, Any]:
        return service.record_feedback(tenant, body.type, body.session_id, trace_id=body.trace_id,
                                       score=getattr(body, "score", None), text=getattr(body, "text", None),
                                       comment=body.comment)

    @app.get("/v1/feedback", tags=["feedback"], summary="Feedback events, newest first")
    def list_feedback(tenant: Tenant, session_id: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
        if session_id is not None:
            service.session(tenant, session_id)
        return service.feedback(tenant, session_id, limit)

    # ------------------------------------------------------------------ memory
    @app.get("/v1/memory/search", tags=["memory"], summary="Hybrid search of the tenant's memory")
    def memory_search(tenant: Tenant, q: Annotated[str, Query(min_length=1, max_length=10_000)],
                      k: Annotated[int, Query(ge=1, le=200)] = 10, session_id: str | None = None,
                      user: str | None = None) -> list[dict[str, Any]]:
        if session_id is not None:
            service.session(tenant, session_id)
        hits = service.store(tenant).search(q, k=k if user is None else 3 * k, session=session_id)
        if user is not None:
            hits = [h for h in hits if h.item.meta.get("user") in (None, user)][:k]
        return [_hit(h) for h in hits]

    @app.get("/v1/memory/items", tags=["memory"], summary="The tenant's live items, by id")
    def memory_items(tenant: Tenant, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        store = service.store(tenant)
        items = [i.to_dict() for i in itertools.islice(store.items(), offset, offset + limit)]
        return {"total": len(store), "offset": offset, "items": items}

    @app.get("/v1/memory/items/{item_id}", tags=["memory"], summary="One item (its live version)")
    def memory_item(tenant: Tenant, item_id: str) -> dict[str, Any]:
        return service.store(tenant).get(item_id).to_dict()

    @app.get("/v1/memory/items/{item_id}/history", tags=["memory"], summary="Every version of an item")
    def memory_history(tenant: Tenant, item_id: str) -> list[dict[str, Any]]:
        history = service.store(tenant).history(item_id)
        if not history:
            raise NotFound(f"no item {item_id!r} in this tenant's memory")
        return [i.to_dict() for i in history]

    @app.post("/v1/memory/ops", status_code=201, tags=["memory"],
              summary="Apply memory operations atomically (committed to the ledger)")
    def memory_ops(tenant: Tenant, body: MemoryOps) -> dict[str, Any]:
        ops = [op_from_dict(d, i) for i, d in enumerate(body.operations)]
        return service.apply_ops(tenant, ops, scope=body.scope, message=body.message)

    # ------------------------------------------------------------------ ledger
    @app.get("/v1/ledger/refs", tags=["ledger"], summary="The tenant's refs and their live versions")
    def ledger_refs(tenant: Tenant) -> dict[str, str]:
        return service.tenant_ledger(tenant).refs()

    @app.get("/v1/ledger/log", tags=["ledger"], summary="The tenant's history, newest first")
    def ledger_log(tenant: Tenant, ref: str | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
                   type: Annotated[list[str] | None, Query()] = None) -> list[dict[str, Any]]:
        return service.tenant_ledger(tenant).log(ref, limit=limit, types=type)

    @app.get("/v1/ledger/versions/{version}", tags=["ledger"], summary="One version with its changes and verdicts")
    def ledger_show(tenant: Tenant, version: str) -> dict[str, Any]:
        return service.tenant_ledger(tenant).show(version)

    @app.get("/v1/ledger/verdicts", tags=["ledger"], summary="The tenant's gate verdicts, newest first")
    def ledger_verdicts(tenant: Tenant, ref: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                        offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
        return service.tenant_ledger(tenant).verdicts(ref, limit=limit, offset=offset)

    @app.get("/v1/ledger/verdicts/{verdict_id}", tags=["ledger"], summary="A gate verdict with its evidence")
    def ledger_verdict(tenant: Tenant, verdict_id: str) -> dict[str, Any]:
        return service.tenant_ledger(tenant).verdict(verdict_id)

    @app.get("/v1/ledger/diff", tags=["ledger"], summary="How version b differs from version a")
    def ledger_diff(tenant: Tenant, a: str, b: str) -> dict[str, Any]:
        tl = service.tenant_ledger(tenant)
        va, vb, rows = tl.diff(a, b)
        out: dict[str, Any] = {"a": va.id, "b": vb.id, "artifacts": rows}
        if "memory" in va.manifest and "memory" in vb.manifest:
            out["memory"] = service.memory(tenant).diff(va, vb).to_dict()
        return out

    @app.post("/v1/ledger/rollback", tags=["ledger"], summary="Roll a ref back to a version it has been at")
    def ledger_rollback(tenant: Tenant, body: RollbackRequest) -> dict[str, Any]:
        return service.rollback(tenant, body.ref, body.to, body.reason)

    # ------------------------------------------------------------------ OpenAI-compatible
    @app.get("/v1/models", tags=["openai"], summary="The chat backends (OpenAI format)")
    def models(tenant: Tenant) -> dict[str, Any]:
        return {"object": "list",
                "data": [{"id": name, "object": "model", "created": 0, "owned_by": "lifelong"} for name in cfg.backends]}

    @app.post("/v1/chat/completions", tags=["openai"], summary="OpenAI-compatible chat completions with learned context")
    def chat_completions(tenant: Tenant, body: ChatCompletionRequest,
                         x_session_id: Annotated[str | None, Header()] = None) -> Any:
        if body.n != 1:
            raise BadRequest(f"n={body.n} is not supported; lifelong returns one choice (n=1)")
        session_id = body.session_id or x_session_id
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        options: dict[str, Any] = dict(
            session_id=session_id, user=body.user, model=body.model,
            max_tokens=body.max_completion_tokens or body.max_tokens or 256,
            temperature=body.temperature or 0.0, seed=body.seed, stop=stop)
        messages = [m.model_dump() for m in body.messages]
        created = int(time.time())
        if body.stream:
            # Returns once the first piece is there (504/502 as JSON if it does not come); the rest is
            # sent as the backend produces it, and the trace is stored when the stream ends.
            stream = service.stream(tenant, messages, **options)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStreamResponse(stream, _sse(stream, created, include_usage),
                                       headers={"X-Lifelong-Trace": stream.trace_id})
        result = service.complete(tenant, messages, **options)
        return JSONResponse(_completion_body(result, result.trace.model, created),
                            headers={"X-Lifelong-Trace": result.trace.id})

    # ------------------------------------------------------------------ dashboard (/dashboard and its JSON routes)
    install_dashboard(app, service, tenant_of)
    return app
