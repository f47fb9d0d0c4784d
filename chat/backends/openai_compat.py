"""The cloud backend: any OpenAI-compatible ``/chat/completions`` API, streamed over SSE.

Works with OpenAI, DeepSeek, DashScope (compatible mode), the Hugging Face router, Ollama, vLLM
and ``llama_cpp.server``. One pooled ``httpx.Client`` is shared by every session of the process.

Retry, backoff and fallback live in the engine; this module only turns one HTTP attempt into
text deltas and, on failure, into exactly one ``chat.errors`` class. Every httpx exception is
mapped at one seam (``stream``), raised outside the ``except`` block, so no traceback, message
or ``__context__`` carries the request (and with it the ``Authorization`` header). Provider
bodies are parsed for a few identifiers and numbers, never copied into a message.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, SSEError, connect_sse
from httpx_sse._decoders import SSEDecoder, SSELineDecoder  # pinned 0.4.3; see _sse_batches

from chat.backends.base import Backend, Chunk, Finish
from chat.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadResponse,
    ConfigError,
    ContextOverflow,
    RateLimited,
    Unavailable,
)
from chat.messages import GenerationParams, Message

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024  # an error body larger than this is not worth reading
DRAIN_GRACE = 1.0  # seconds the body may take to end after [DONE] before it is cut
PER_MESSAGE_TOKENS = 4  # role markers and separators in a chat template
PRIMING_TOKENS = 3  # the assistant header the template appends
_WORD = re.compile(r"[A-Za-z]{1,6}")
_DIGIT = re.compile(r"[0-9]")
_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
_SPACE = re.compile(r"\s*\n\s*|[ \t]{2,}")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_KEY_OK = re.compile(r"^[\x21-\x7e]+$")  # what an HTTP header can carry without error or echo

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


@dataclass(frozen=True)
class Timeouts:
    """Seconds: to connect, to wait for the first byte and between chunks, for a whole attempt."""

    connect: float = 5.0
    read: float = 30.0
    total: float = 120.0

    def for_attempt(self, budget: float) -> httpx.Timeout:
        """httpx's per-phase timeouts, none longer than what is left of the request."""
        read = min(self.read, budget)
        return httpx.Timeout(connect=min(self.connect, budget), read=read, write=read, pool=read)


def build_http_client(*, max_connections: int = 256) -> httpx.Client:
    """A pooled client with keep-alive; timeouts are set per request from ``Timeouts``.

    Every connection may stay alive (keep-alive limit = connection limit): httpcore 1.0.9
    closes "surplus" idle connections counting all of them, and can close one already handed
    to a waiting request (encode/httpcore#1110), which under load shows as EBADF or a hang.
    """
    return httpx.Client(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
        timeout=httpx.Timeout(30.0, connect=5.0),
        follow_redirects=False,  # a redirect could carry the Authorization header elsewhere
        trust_env=True,  # honour HTTPS_PROXY / NO_PROXY like any other client
    )


_shared_lock = threading.Lock()
_shared: httpx.Client | None = None


def shared_http_client() -> httpx.Client:
    """The process-wide client: one connection pool for all sessions and backends."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.is_closed:
            _shared = build_http_client()
        return _shared


def estimate_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens, estimated (a remote API's tokenizer is not available here).

    The engine re-fits with a smaller window when the API says the estimate was too low.
    """
    return PRIMING_TOKENS + sum(PER_MESSAGE_TOKENS + estimate_text_tokens(m.content) for m in messages)


def estimate_text_tokens(text: str) -> int:
    """Count what BPE vocabularies usually make one token of.

    A run of up to six Latin letters (a word with its leading space), each digit, each ASCII
    punctuation mark, each line break or indentation run, each CJK character; other scripts at
    two characters a token. Within ~5% of real counts for English prose and code.
    """
    ascii_chars = len(text.encode("ascii", "ignore"))
    cjk = len(_CJK.findall(text))
    other = len(text) - ascii_chars - cjk
    return (
        len(_WORD.findall(text))
        + len(_DIGIT.findall(text))
        + len(_PUNCT.findall(text))
        + len(_SPACE.findall(text))
        + cjk
        + math.ceil(other / 2)
    )


class OpenAICompatBackend(Backend):
    """Streams from ``POST {base_url}/chat/completions`` with ``stream: true``.

    >>> backend = OpenAICompatBackend("https://api.openai.com/v1", "gpt-4o-mini", api_key=key)
    """

    name = "cloud"
    exact_token_count = False  # the engine re-fits on a provider's context-length error
    accepts_time_left = True  # the engine passes what is left of the request's total time

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        client: httpx.Client | None = None,
        timeouts: Timeouts | None = None,
        context_window: int | None = None,
        name: str = "cloud",
    ) -> None:
        base_url = base_url.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise ConfigError(
                "--api-base-url must start with http:// or https://, e.g. https://api.openai.com/v1"
            )
        if not model.strip():
            raise ConfigError("--api-model is empty: name the model the API should run")
        self.name = name
        self.model = model.strip()
        self.base_url = base_url
        self.timeouts = timeouts or Timeouts()
        self._url = base_url + "/chat/completions"
        self._api_key = api_key
        self._owns_client = client is None
        self._client = client if client is not None else build_http_client()
        self._context_window = context_window

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatBackend({self.name!r}, model={self.model!r})"

    # -- Backend ------------------------------------------------------------------------------

    def context_window(self) -> int | None:
        return self._context_window

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return estimate_tokens(messages)

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
        time_left: float | None = None,
    ) -> Iterator[Chunk]:
        """One attempt. Errors are ``chat.errors`` classes; closing the iterator closes the socket."""
        budget = self.timeouts.total if time_left is None else max(min(self.timeouts.total, time_left), 0.01)
        watch = _Watch(time.monotonic() + budget, cancel)
        error: BackendError | ContextOverflow
        try:
            key = api_key or self._api_key
            yield from self._attempt(
                _payload(self.model, messages, params), key, self.timeouts.for_attempt(budget), watch
            )
            return
        except (BackendError, ContextOverflow) as exc:
            error = exc
        except (httpx.HTTPError, httpx.StreamError) as exc:  # HTTPError includes SSEError
            error = self._transport_error(exc, watch)
        finally:
            _WATCHDOG.remove(watch)
        if watch.reason == "cancelled":
            yield Finish("cancelled")
            return
        log.info("%s attempt failed: %s: %s", self.name, type(error).__name__, error)
        raise error

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- one attempt --------------------------------------------------------------------------

    def _headers(self, key: str) -> dict[str, str]:
        if not key:
            return {}  # Ollama, vLLM and llama_cpp.server run without one
        if not _KEY_OK.match(key):
            raise AuthFailed(
                "the API key contains spaces or characters a header cannot carry", backend=self.name
            )
        return {"Authorization": f"Bearer {key}"}

    def _attempt(
        self, payload: dict[str, Any], key: str, timeout: httpx.Timeout, watch: _Watch
    ) -> Iterator[Chunk]:
        headers = self._headers(key)
        with connect_sse(
            self._client, "POST", self._url, json=payload, headers=headers, timeout=timeout
        ) as source:
            response = source.response
            if response.status_code >= 400:
                raise self._status_error(response, _read_limited(response), key)
            if not _is_event_stream(response):
                yield from self._plain_json(_read_limited(response), response.status_code, key)
                return
            _WATCHDOG.add(watch, response)
            try:
                yield from self._events(response, watch, key)
            finally:
                _WATCHDOG.remove(watch)  # before the connection can go back to the pool

    def _events(self, response: httpx.Response, watch: _Watch, key: str) -> Iterator[Chunk]:
        """Text deltas from the event stream, one per network read.

        Deltas that arrived together are joined: under load a burst costs the engine and the UI
        one update instead of one per token, and nothing waits for data not yet received.
        """
        finish_reason: str | None = None
        usage: Mapping[str, Any] = {}
        done = False
        events = 0  # content events: the completion's token count when the API sends no usage
        cancel = watch.cancel
        try:
            for batch in _sse_batches(response):
                if watch.reason or (cancel is not None and cancel.is_set()):
                    watch.check(time.monotonic())  # note why, and cut the socket
                    break
                if done:
                    continue  # after [DONE]: drain so the connection goes back to the pool
                texts: list[str] = []
                for sse in batch:
                    data = sse.data
                    if done or not data:
                        continue
                    if data[0] != "{" and data.strip() == "[DONE]":
                        done = True
                        watch.deadline = min(watch.deadline, time.monotonic() + DRAIN_GRACE)
                        continue
                    chunk = _json_object(data)
                    if chunk is None:
                        yield from _joined(texts)
                        raise BadResponse("malformed data line in the event stream", backend=self.name)
                    if chunk.get("error") or sse.event == "error":
                        yield from _joined(texts)
                        raise self._body_error(chunk, status=200, key=key)
                    if chunk.get("usage"):
                        usage = chunk["usage"] if isinstance(chunk["usage"], dict) else usage
                    for choice in chunk.get("choices") or ():
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta")
                        text = delta.get("content") if isinstance(delta, dict) else None
                        if text and isinstance(text, str):
                            texts.append(text)
                            events += 1
                        if choice.get("finish_reason"):
                            finish_reason = str(choice["finish_reason"])
                yield from _joined(texts)
        except (httpx.HTTPError, httpx.StreamError):
            if not done:
                raise  # mapped at the seam in ``stream``
            # after [DONE] the reply is complete: a slow or cut end of the body does not matter
        if not done:
            if watch.reason == "timeout":
                raise BackendTimeout("the reply took longer than the total timeout", backend=self.name)
            if watch.reason == "cancelled":
                yield Finish("cancelled")
                return
            if finish_reason is None:
                # llama_cpp.server ends a stream this way on a context overflow; proxies on a cut.
                raise Unavailable("the stream ended before the reply was complete", backend=self.name)
        yield Finish(
            finish_reason or "unknown",  # [DONE] without finish_reason: an interrupted reply
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")) or events or None,
        )

    def _plain_json(self, body: bytes, status: int, key: str) -> Iterator[Chunk]:
        """A JSON body where SSE was expected: an error, or a server that ignored ``stream``."""
        obj = _json_object(body.decode("utf-8", "replace"))
        if obj is None:
            raise BadResponse(f"HTTP {status} with a body that is neither SSE nor JSON", backend=self.name)
        if obj.get("error"):
            raise self._body_error(obj, status=status, key=key)
        choices = obj.get("choices")
        message = (
            choices[0].get("message")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict)
            else None
        )
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise BadResponse(f"HTTP {status} JSON without choices", backend=self.name)
        if message["content"]:
            yield message["content"]
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
        yield Finish(
            str(choices[0].get("finish_reason") or "stop"),
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
        )

    # -- errors: the one seam -------------------------------------------------------------------

    def _transport_error(self, exc: Exception, watch: _Watch) -> BackendError:
        if watch.reason == "timeout":
            return BackendTimeout("the reply took longer than the total timeout", backend=self.name)
        kind = type(exc).__name__  # the class name only: messages can carry URLs or header values
        if isinstance(exc, httpx.ConnectTimeout):
            return BackendTimeout(f"no connection within {self.timeouts.connect:g} s", backend=self.name)
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeout(f"no data within the read timeout ({kind})", backend=self.name)
        if isinstance(exc, httpx.ConnectError):
            return Unavailable("cannot connect to the API", backend=self.name)
        if isinstance(exc, SSEError):
            return BadResponse("not an event stream", backend=self.name)
        if isinstance(exc, httpx.LocalProtocolError):
            return BadResponse("the request could not be sent", backend=self.name)
        return Unavailable(f"connection lost ({kind})", backend=self.name)

    def _status_error(
        self, response: httpx.Response, body: bytes, key: str
    ) -> BackendError | ContextOverflow:
        obj = _json_object(body.decode("utf-8", "replace")) or {}
        error = self._body_error(obj, status=response.status_code, key=key)
        if isinstance(error, BackendError):
            error.retry_after = _retry_after(response.headers)
            should = response.headers.get("x-should-retry", "").strip().lower()
            if should in ("true", "false"):
                error.retryable = should == "true"
        return error

    def _body_error(self, obj: Mapping[str, Any], *, status: int, key: str) -> BackendError | ContextOverflow:
        """Classify a provider error object; only identifiers and numbers leave this method."""
        raw = obj.get("error", obj)
        err = raw if isinstance(raw, dict) else {"message": raw if isinstance(raw, str) else ""}
        message = str(err.get("message") or obj.get("message") or obj.get("detail") or "")
        code = _identifier(err.get("code"), key)
        etype = _identifier(err.get("type"), key)
        label = f"HTTP {status}" + "".join(f" {x}" for x in dict.fromkeys(filter(None, (code, etype))))
        args = {"backend": self.name}
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
        if status == 200:  # an error object inside a stream or a 200 body
            if (
                etype in ("server_error", "overloaded_error", "internal_server_error")
                or code == "server_error"
            ):
                return Unavailable(label, **args)
            return BadResponse(label, **args)
        return BadResponse(label, **args)


# -- watchdog: total time and cancel for a stream blocked in a read ------------------------------


class _Watch:
    """One attempt's deadline and cancel flag; ``reason`` says why it was cut."""

    __slots__ = ("deadline", "cancel", "reason", "_sock")

    def __init__(self, deadline: float, cancel: threading.Event | None) -> None:
        self.deadline = deadline
        self.cancel = cancel
        self.reason: str | None = None
        self._sock: socket.socket | None = None

    def arm(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        self._sock = stream.get_extra_info("socket") if stream is not None else None
        if self.reason:
            self.cut()

    def disarm(self) -> None:
        self._sock = None

    def check(self, now: float) -> None:
        if self.reason is None:
            if now >= self.deadline:
                self.reason = "timeout"
            elif self.cancel is not None and self.cancel.is_set():
                self.reason = "cancelled"
            else:
                return
            self.cut()

    def cut(self) -> None:
        """Shut the socket down: wakes a blocked read at once (close alone would not)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process cuts streams past their deadline or cancelled."""

    INTERVAL = 0.05

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch, response: httpx.Response) -> None:
        # httpx closes a response, and the pool hands its connection to the next request, the
        # moment the body ends: disarm first, so a late cut never hits a reused socket.
        response.stream = _DisarmFirst(response.stream, lambda: self.remove(watch))
        watch.arm(response)
        with self._cond:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cloud-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, watch: _Watch) -> None:
        """After this returns the watch can no longer cut its socket (which may be reused)."""
        with self._cond:
            self._watches.discard(watch)
            watch.disarm()

    def _run(self) -> None:
        while True:
            with self._cond:  # checks run under the lock, so a removed watch is never cut
                while not self._watches:
                    self._cond.wait()
                self._cond.wait(self.INTERVAL)
                now = time.monotonic()
                for watch in self._watches:
                    watch.check(now)


class _DisarmFirst(httpx.SyncByteStream):
    """The response body, calling ``disarm`` when it ends or closes, before the pool sees it."""

    def __init__(self, stream: httpx.SyncByteStream, disarm: Callable[[], None]) -> None:
        self._stream = stream
        self._disarm = disarm

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream
        self._disarm()

    def close(self) -> None:
        self._disarm()
        self._stream.close()


_WATCHDOG = _Watchdog()


# -- helpers -----------------------------------------------------------------------------------


def _payload(model: str, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [m.to_dict() for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.seed is not None:
        payload["seed"] = params.seed
    return payload


def _sse_batches(response: httpx.Response) -> Iterator[list[ServerSentEvent]]:
    """httpx-sse's own decoders (as in ``EventSource.iter_sse``), grouped by network read."""
    lines, decoder = SSELineDecoder(), SSEDecoder()
    for text in response.iter_text():
        batch = [sse for line in lines.decode(text) if (sse := decoder.decode(line)) is not None]
        if batch:
            yield batch
    tail = [sse for line in lines.flush() if (sse := decoder.decode(line)) is not None]
    if tail:  # as the SSE spec says, an event without its closing blank line is dropped
        yield tail


def _joined(texts: list[str]) -> Iterator[str]:
    if texts:
        yield "".join(texts)
        texts.clear()


def _is_event_stream(response: httpx.Response) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


def _read_limited(response: httpx.Response, limit: int = MAX_ERROR_BODY) -> bytes:
    body = bytearray()
    for part in response.iter_bytes():
        body += part
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _identifier(value: Any, secret: str) -> str:
    """A provider's ``code``/``type`` when it is a short identifier (never free text, never the key)."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        return ""
    if secret and (secret in value or value in secret):
        return ""
    return value


def _retry_after(headers: httpx.Headers) -> float | None:
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
