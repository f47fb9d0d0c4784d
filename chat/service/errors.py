"""HTTP errors of the service routes: one JSON shape, and the status each ``ChatError`` maps to.

Every refusal a client can get from ``/api``, ``/v1``, ``/ws`` and ``/metrics`` looks like
``{"error": {"type": ..., "message": ..., "request_id": ...}}``, so a script handles one shape.
"""

from __future__ import annotations

import math
import re

from starlette.responses import JSONResponse

from chat.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadResponse,
    ChatError,
    ConfigError,
    ContextOverflow,
    InvalidRequest,
    RateLimited,
    Unavailable,
)
from chat.i18n import Lang

# (status, type) per engine error; the first matching class wins, so subclasses come first.
_STATUS: list[tuple[type[ChatError], int, str]] = [
    (InvalidRequest, 400, "invalid_request"),
    (ContextOverflow, 400, "context_overflow"),
    (ConfigError, 500, "config_error"),
    (RateLimited, 503, "backend_rate_limited"),
    (BackendTimeout, 504, "backend_timeout"),
    (Unavailable, 503, "backend_unavailable"),
    (AuthFailed, 502, "backend_auth_failed"),
    (BadResponse, 502, "backend_bad_response"),
    (BackendError, 502, "backend_error"),
]


class ApiError(Exception):
    """A request the service refuses, with the status and a message safe to show the client."""

    def __init__(
        self, status: int, kind: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str = "") -> dict[str, object]:
        error: dict[str, object] = {"type": self.kind, "message": self.message}
        if request_id:
            error["request_id"] = request_id
        return {"error": error}

    def response(self, request_id: str = "") -> JSONResponse:
        headers = dict(self.headers)
        if request_id:
            headers["X-Request-ID"] = request_id
        return JSONResponse(self.body(request_id), status_code=self.status, headers=headers)


def from_chat_error(exc: ChatError, lang: Lang = "en") -> ApiError:
    """The HTTP form of an engine error: its user message, never a traceback or provider body."""
    status, kind = 500, "internal_error"
    for cls, code, name in _STATUS:
        if isinstance(exc, cls):
            status, kind = code, name
            break
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, (int, float)) and retry_after > 0:
        headers["Retry-After"] = str(math.ceil(retry_after))
    return ApiError(status, kind, exc.user_message(lang), headers=headers)


def error_kind(exc: BaseException) -> str:
    """A short label for metrics and logs: ``ContextOverflow`` -> ``context_overflow``."""
    if not isinstance(exc, ChatError):
        return "internal_error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
