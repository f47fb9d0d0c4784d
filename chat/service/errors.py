"""HTTP errors of the service routes: one JSON shape, and the status each ``ChatError`` maps to.

Every refusal a client can get from ``/api``, ``/v1``, ``/ws`` and ``/metrics`` looks like
``{"error": {"type": ..., "message": ..., "request_id": ...}}``, so a script handles one shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

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
from chat.i18n import Lang, t
from chat.knowledge.errors import (
    BadKnowledgeName,
    BrokenDocument,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    KnowledgeNotFound,
    UnsupportedType,
)
from chat.store.errors import ConversationNotFound, StoreError

# (status, type) per engine error; the first matching class wins, so subclasses come first.
_STATUS: list[tuple[type[ChatError], int, str]] = [
    (ConversationNotFound, 404, "not_found"),
    (KnowledgeNotFound, 404, "not_found"),
    (BadKnowledgeName, 400, "invalid_request"),
    (UnsupportedType, 415, "unsupported_media_type"),
    (DocumentTooLarge, 413, "payload_too_large"),
    (EmptyDocument, 422, "empty_document"),
    (EncryptedDocument, 422, "encrypted_document"),
    (BrokenDocument, 422, "broken_document"),
    (StoreError, 503, "store_unavailable"),
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
    """A request the service refuses, with the status and a message safe to show the client.

    The message is in the user's language: give ``key`` (a sentence in ``chat.i18n``) and its
    fields, or ``text`` (a function of the language), and ``lang`` here or later in ``body`` /
    ``response``; a plain ``message`` is sent as written.
    ``ApiError(413, "payload_too_large", key="api.too_large", limit=1024, lang="zh")``.
    """

    def __init__(
        self,
        status: int,
        kind: str,
        message: str = "",
        *,
        headers: dict[str, str] | None = None,
        key: str = "",
        lang: Lang = "en",
        text: Callable[[Lang], str] | None = None,
        **fields: object,
    ) -> None:
        if text is None:
            text = (lambda lang: t(key, lang, **fields)) if key else (lambda lang: message)
        self._render = text
        self.status = status
        self.kind = kind
        self.lang = lang
        self.headers = headers or {}
        super().__init__(self._render("en"))

    @property
    def message(self) -> str:
        return self._render(self.lang)

    def body(self, request_id: str = "", lang: Lang | None = None) -> dict[str, object]:
        error: dict[str, object] = {"type": self.kind, "message": self._render(lang or self.lang)}
        if request_id:
            error["request_id"] = request_id
        return {"error": error}

    def response(self, request_id: str = "", lang: Lang | None = None) -> JSONResponse:
        headers = dict(self.headers)
        if request_id:
            headers["X-Request-ID"] = request_id
        return JSONResponse(self.body(request_id, lang), status_code=self.status, headers=headers)


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
    return ApiError(status, kind, headers=headers, lang=lang, text=exc.user_message)


def invalid_request(key: str, **fields: object) -> ApiError:
    """400 ``invalid_request`` saying ``key`` (a sentence in ``chat.i18n``) in the language the
    route renders it in: ``raise invalid_request("api.required", field="user_input")``."""
    return ApiError(400, "invalid_request", key=key, **fields)


def from_invalid(exc: ChatError, where: str = "") -> ApiError:
    """400 ``invalid_request`` with an ``InvalidRequest``'s detail alone (``where:`` in front, as
    ``context.history: message role must be ...``), translated when it is rendered."""
    prefix = f"{where}: " if where else ""
    return ApiError(400, "invalid_request", text=lambda lang: prefix + exc.detail_in(lang))


def error_kind(exc: BaseException) -> str:
    """A short label for metrics and logs: ``ContextOverflow`` -> ``context_overflow``."""
    if not isinstance(exc, ChatError):
        return "internal_error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
