"""One hierarchy for every failure the product can report.

    ChatError
    ├── ConfigError          bad settings, a missing or unreadable model file
    ├── InvalidRequest       a parameter of the wrong type or out of range
    ├── ContextOverflow      the newest message cannot fit the context window
    ├── InputBlocked         the input guard refused the message
    ├── OutputBlocked        the output guard stopped the reply
    └── BackendError         a backend failed (``retryable`` says whether to try again)
        ├── Unavailable      connection refused/reset, 5xx
        ├── BackendTimeout   connect/read/total time exceeded
        ├── RateLimited      429 (``retry_after`` seconds, when the server said; 503 too)
        ├── AuthFailed       401/403: check the API key
        └── BadResponse      malformed stream, unexpected body, other 4xx

Every error carries ``user_message(lang)``: a short sentence safe to show a user, in the user's
language. It never contains secrets or raw provider bodies; ``str(error)`` is for logs (English)
and is equally clean. A detail the user reads is given as ``reason=`` (a key in ``chat.i18n``)
with its fields, so it is translated too: ``InvalidRequest(reason="invalid.seed", value=1.5)``.
"""

from __future__ import annotations

from chat.i18n import Lang, t


class ChatError(Exception):
    """Base class. ``key`` names the bilingual message in ``chat.i18n``; ``reason``, when given,
    names the bilingual ``{detail}`` it shows (else ``detail`` is shown as written)."""

    key = "error.internal"
    retryable = False

    def __init__(self, detail: str = "", *, reason: str = "", **fields: object) -> None:
        detail = detail or (t(reason, "en", **fields) if reason else "")
        super().__init__(detail or self.key)
        self.detail = detail
        self.reason = reason
        self.fields = fields

    def user_message(self, lang: Lang = "en") -> str:
        return t(self.key, lang, **{**self.fields, "detail": self.detail_in(lang)})

    def detail_in(self, lang: Lang = "en") -> str:
        """The detail alone (no "Invalid request:" in front), translated when it has a reason."""
        return t(self.reason, lang, **self.fields) if self.reason else self.detail


class ConfigError(ChatError):
    key = "error.config"


class InvalidRequest(ChatError):
    key = "error.invalid"


class ContextOverflow(ChatError):
    key = "error.context_overflow"


class InputBlocked(ChatError):
    key = "error.input_blocked"


class OutputBlocked(ChatError):
    key = "error.output_blocked"


class BackendError(ChatError):
    """``retry_after``: seconds the server asked to wait (429/503), honoured by ``RetryPolicy``.

    ``retryable`` may be overridden per instance (e.g. ``x-should-retry``, an exhausted quota).
    """

    key = "error.backend"

    def __init__(
        self, detail: str = "", *, backend: str = "", retry_after: float | None = None, **fields: object
    ) -> None:
        super().__init__(detail, backend=backend, **fields)
        self.backend = backend
        self.retry_after = retry_after


class Unavailable(BackendError):
    key = "error.unavailable"
    retryable = True


class BackendTimeout(BackendError):
    key = "error.timeout"
    retryable = True


class RateLimited(BackendError):
    key = "error.rate_limited"
    retryable = True


class AuthFailed(BackendError):
    key = "error.auth"


class BadResponse(BackendError):
    key = "error.bad_response"
