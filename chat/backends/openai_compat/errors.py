"""Provider failures to ``chat.errors`` classes: one mapping for httpx errors, statuses and bodies.

Only identifiers and numbers leave this module: a provider's message can echo the request (and
with it the API key), so it is searched for a few figures and never copied into an error.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
from httpx_sse import SSEError

from chat.backends.openai_compat.sse import json_object
from chat.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadResponse,
    ContextOverflow,
    RateLimited,
    Unavailable,
)

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

# Context-length errors, as OpenAI, DeepSeek, vLLM, llama.cpp, TGI and DashScope word them.
_OVERFLOW_HINTS = re.compile(
    r"context[ _]length|context window|context size|maximum context|too many tokens|prompt is too long"
    r"|input length|reduce the length|max_total_tokens|must be <=",
    re.IGNORECASE,
)
_LIMIT = re.compile(
    r"maximum context length is (\d+)|context (?:window|size) (?:of|is) (\d+)|must be <= (\d+)"
    r"|input length should be \[\d+, ?(\d+)\]",
    re.IGNORECASE,
)
_PROMPT = re.compile(
    r"\((\d+) in the messages|request has (\d+) input tokens|given: (\d+) `?inputs`? tokens"
    r"|(\d+) prompt tokens",
    re.IGNORECASE,
)


def transport_error(exc: Exception, *, backend: str, timed_out: bool, connect_timeout: float) -> BackendError:
    """An httpx exception (``timed_out``: the watchdog cut the stream at the total deadline)."""
    if timed_out:
        return BackendTimeout("the reply took longer than the total timeout", backend=backend)
    kind = type(exc).__name__  # the class name only: messages can carry URLs or header values
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendTimeout(f"no connection within {connect_timeout:g} s", backend=backend)
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(f"no data within the read timeout ({kind})", backend=backend)
    if isinstance(exc, httpx.ConnectError):
        return Unavailable("cannot connect to the API", backend=backend)
    if isinstance(exc, SSEError):
        return BadResponse("not an event stream", backend=backend)
    if isinstance(exc, httpx.LocalProtocolError):
        return BadResponse("the request could not be sent", backend=backend)
    return Unavailable(f"connection lost ({kind})", backend=backend)


def status_error(
    response: httpx.Response, body: bytes, *, backend: str, key: str
) -> BackendError | ContextOverflow:
    """An HTTP error status, with the provider's ``Retry-After`` and ``x-should-retry``."""
    obj = json_object(body.decode("utf-8", "replace")) or {}
    error = body_error(obj, status=response.status_code, backend=backend, key=key)
    if isinstance(error, BackendError):
        error.retry_after = retry_after(response.headers)
        should = response.headers.get("x-should-retry", "").strip().lower()
        if should in ("true", "false"):
            error.retryable = should == "true"
    return error


def body_error(
    obj: Mapping[str, Any], *, status: int, backend: str, key: str
) -> BackendError | ContextOverflow:
    """Classify a provider error object (from a status body or inside a stream)."""
    raw = obj.get("error", obj)
    err = raw if isinstance(raw, dict) else {"message": raw if isinstance(raw, str) else ""}
    message = str(err.get("message") or obj.get("message") or obj.get("detail") or "")
    code = _identifier(err.get("code"), key)
    etype = _identifier(err.get("type"), key)
    label = f"HTTP {status}" + "".join(f" {x}" for x in dict.fromkeys(filter(None, (code, etype))))
    args = {"backend": backend}
    if code == "context_length_exceeded" or (
        status in (200, 400, 413, 422) and _OVERFLOW_HINTS.search(message)
    ):
        return _context_overflow(label, message)
    if status in (401, 403) or etype in ("authentication_error", "permission_error"):
        return AuthFailed(label, **args)
    if status == 429 or code in ("rate_limit_exceeded", "insufficient_quota"):
        limited = RateLimited(label, **args)
        limited.retryable = "insufficient_quota" not in (code, etype)  # waiting will not help
        return limited
    if status in (408, 504):
        return BackendTimeout(label, **args)
    if status == 409 or status >= 500:
        return Unavailable(label, **args)
    if status == 200 and (
        etype in ("server_error", "overloaded_error", "internal_server_error") or code == "server_error"
    ):
        return Unavailable(label, **args)  # an error object inside a stream or a 200 body
    return BadResponse(label, **args)


def retry_after(headers: httpx.Headers) -> float | None:
    """``retry-after-ms``, then ``retry-after`` as seconds or an HTTP date (as openai-python does)."""
    with contextlib.suppress(ValueError):
        if "retry-after-ms" in headers:
            return max(float(headers["retry-after-ms"]) / 1000, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(float(value), 0.0)
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = email.utils.parsedate_to_datetime(value)
        return max(when.timestamp() - time.time(), 0.0)
    return None


def _identifier(value: Any, secret: str) -> str:
    """A provider's ``code``/``type`` when it is a short identifier (never free text, never the key)."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        return ""
    if secret and (secret in value or value in secret):
        return ""
    return value


def _context_overflow(label: str, message: str) -> ContextOverflow:
    """A ContextOverflow with the provider's figures when its message has them."""
    limit = _first_int(_LIMIT, message)
    prompt = _first_int(_PROMPT, message)
    fields: dict[str, int] = {}
    if limit is not None:
        fields["limit"] = limit
    if prompt is not None:
        fields["prompt_tokens"] = prompt
    return ContextOverflow(f"{label}: context length exceeded", **fields)


def _first_int(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    if match is None:
        return None
    return next(int(g) for g in match.groups() if g is not None)
