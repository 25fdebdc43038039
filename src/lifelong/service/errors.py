"""HTTP errors with clear JSON bodies, and the mapping from lifelong's own errors to status codes.

>>> err = NotFound("no session 's-1' for this key's tenant; create one with POST /v1/sessions")
>>> err.status, err.type
(404, 'not_found')
>>> status_for(VersionNotFoundError("x")), status_for(InvalidOpError("bad op")), status_for(ItemNotFoundError("x"))
(404, 422, 404)
"""

from __future__ import annotations

from typing import Any

from lifelong.context.errors import InvalidOpError, ItemNotFoundError, MemoryStoreError, StoreLockedError
from lifelong.core.errors import BudgetError, LifelongError, VersionNotFoundError


class ApiError(Exception):
    """An error the service answers with ``status`` and ``{"error": {"message", "type", "code"}}``."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ApiError):
    """400: the request cannot be read (malformed JSON, an unsupported option)."""


class Unauthorized(ApiError):
    """401: no API key, or one the service does not know."""

    status = 401
    type = "authentication_error"


class NotFound(ApiError):
    """404: no such session, trace, item, ref or version *for this tenant* (another tenant's things are
    indistinguishable from things that do not exist)."""

    status = 404
    type = "not_found"


class Conflict(ApiError):
    """409: the request is valid but the state forbids it (chat in an ended session)."""

    status = 409
    type = "conflict"


class Unprocessable(ApiError):
    """422: well-formed JSON that breaks a rule (a missing field, a bad memory operation)."""

    status = 422
    type = "invalid_request_error"


class RateLimited(ApiError):
    """429: this key sent too many requests; ``Retry-After`` says when to try again."""

    status = 429
    type = "rate_limit_error"


class BackendFailed(ApiError):
    """502: the chat backend failed (unreachable, crashed, malformed reply)."""

    status = 502
    type = "backend_error"


class BackendTimeout(ApiError):
    """504: the chat backend did not answer within the configured time."""

    status = 504
    type = "backend_timeout"


def status_for(err: LifelongError) -> int:
    """The HTTP status for one of lifelong's own errors."""
    if isinstance(err, VersionNotFoundError | ItemNotFoundError):
        return 404
    if isinstance(err, StoreLockedError):
        return 503
    if isinstance(err, InvalidOpError | BudgetError | MemoryStoreError):
        return 422
    return 400
