"""``OpenAICompatBackend``: one HTTP attempt turned into text deltas, or one ``chat.errors`` class.

Every httpx exception is mapped at one seam (``stream``), raised outside the ``except`` block,
so no traceback, message or ``__context__`` carries the request (and with it the
``Authorization`` header).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from httpx_sse import connect_sse

from chat.backends.base import Backend, Chunk, Finish
from chat.backends.openai_compat.client import Timeouts, build_http_client
from chat.backends.openai_compat.errors import body_error, status_error, transport_error
from chat.backends.openai_compat.estimate import estimate_tokens
from chat.backends.openai_compat.sse import (
    ChunkReader,
    count,
    is_event_stream,
    json_object,
    read_limited,
    reasoning_text,
    sse_batches,
)
from chat.backends.openai_compat.watchdog import WATCHDOG, Watch
from chat.backends.tool_offer import ToolOffer
from chat.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadResponse,
    ConfigError,
    ContextOverflow,
    InvalidRequest,
    Unavailable,
)
from chat.messages import GenerationParams, Message, ThinkingDelta, ToolCall

log = logging.getLogger(__name__)

DRAIN_GRACE = 1.0  # seconds the body may take to end after [DONE] before it is cut
_KEY_OK = re.compile(r"^[\x21-\x7e]+$")  # what an HTTP header can carry without error or echo


class OpenAICompatBackend(Backend):
    """Streams from ``POST {base_url}/chat/completions`` with ``stream: true``.

    >>> backend = OpenAICompatBackend("https://api.openai.com/v1", "gpt-4o-mini", api_key=key)
    """

    name = "cloud"
    exact_token_count = False  # the engine re-fits on a provider's context-length error
    accepts_time_left = True  # the engine passes what is left of the request's total time
    accepts_api_key = True  # a session may bring its own key
    response_formats = frozenset({"text", "json_object", "json_schema"})  # passed to the API
    native_tools = True  # tools and tool_choice are sent on; streamed tool_calls read back

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

    @property
    def http_client(self) -> httpx.Client:
        """The connection pool this backend sends through (shared when the factory built it)."""
        return self._client

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
        watch = Watch(time.monotonic() + budget, cancel)
        error: BackendError | ContextOverflow
        try:
            key = api_key or self._api_key
            yield from self._attempt(
                payload(self.model, messages, params), key, self.timeouts.for_attempt(budget), watch
            )
            return
        except (BackendError, ContextOverflow) as exc:
            error = exc
        except (httpx.HTTPError, httpx.StreamError) as exc:  # HTTPError includes SSEError
            error = transport_error(
                exc,
                backend=self.name,
                timed_out=watch.reason == "timeout",
                connect_timeout=self.timeouts.connect,
            )
        finally:
            WATCHDOG.remove(watch)
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
        self, body: dict[str, Any], key: str, timeout: httpx.Timeout, watch: Watch
    ) -> Iterator[Chunk]:
        headers = self._headers(key)
        with connect_sse(
            self._client, "POST", self._url, json=body, headers=headers, timeout=timeout
        ) as source:
            response = source.response
            if response.status_code >= 400:
                raise status_error(response, read_limited(response), backend=self.name, key=key)
            if not is_event_stream(response):
                yield from self._plain_json(read_limited(response), response.status_code, key)
                return
            WATCHDOG.add(watch, response)
            try:
                yield from self._events(response, watch, key)
            finally:
                WATCHDOG.remove(watch)  # before the connection can go back to the pool

    def _events(self, response: httpx.Response, watch: Watch, key: str) -> Iterator[Chunk]:
        """Text deltas (and ``ThinkingDelta`` for a reasoning field) from the event stream,
        one run of each per network read.

        Deltas that arrived together are joined: under load a burst costs the engine and the UI
        one update instead of one per token, and nothing waits for data not yet received.
        """
        reader = ChunkReader()
        cancel = watch.cancel
        try:
            for batch in sse_batches(response):
                if watch.reason or (cancel is not None and cancel.is_set()):
                    watch.check(time.monotonic())  # note why, and cut the socket
                    break
                if reader.done:
                    continue  # after [DONE]: drain so the connection goes back to the pool
                pieces, failure = reader.read(batch)
                yield from pieces
                if reader.done:
                    watch.deadline = min(watch.deadline, time.monotonic() + DRAIN_GRACE)
                if failure is not None and failure.error is None:
                    raise BadResponse("malformed data line in the event stream", backend=self.name)
                if failure is not None:
                    raise body_error(failure.error, status=200, backend=self.name, key=key)
        except (httpx.HTTPError, httpx.StreamError):
            if not reader.done:
                raise  # mapped at the seam in ``stream``
            # after [DONE] the reply is complete: a slow or cut end of the body does not matter
        if not reader.done:
            if watch.reason == "timeout":
                raise BackendTimeout("the reply took longer than the total timeout", backend=self.name)
            if watch.reason == "cancelled":
                yield Finish("cancelled")
                return
            if reader.finish_reason is None:
                # llama_cpp.server ends a stream this way on a context overflow; proxies on a cut.
                raise Unavailable("the stream ended before the reply was complete", backend=self.name)
        yield from reader.calls()
        yield Finish(
            reader.finish_reason or "unknown",  # [DONE] without finish_reason: an interrupted reply
            prompt_tokens=count(reader.usage.get("prompt_tokens")),
            completion_tokens=count(reader.usage.get("completion_tokens")) or reader.events or None,
        )

    def _plain_json(self, body: bytes, status: int, key: str) -> Iterator[Chunk]:
        """A JSON body where SSE was expected: an error, or a server that ignored ``stream``."""
        obj = json_object(body.decode("utf-8", "replace"))
        if obj is None:
            raise BadResponse(f"HTTP {status} with a body that is neither SSE nor JSON", backend=self.name)
        if obj.get("error"):
            raise body_error(obj, status=status, backend=self.name, key=key)
        choices = obj.get("choices")
        message = (
            choices[0].get("message")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict)
            else None
        )
        if not isinstance(message, dict) or not isinstance(message.get("content") or "", str):
            raise BadResponse(f"HTTP {status} JSON without choices", backend=self.name)
        if thinking := reasoning_text(message):
            yield ThinkingDelta(thinking)
        if message.get("content"):
            yield message["content"]
        try:
            yield from [ToolCall.from_dict(call) for call in message.get("tool_calls") or ()]
        except InvalidRequest:
            raise BadResponse(f"HTTP {status} JSON with malformed tool_calls", backend=self.name) from None
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
        yield Finish(
            str(choices[0].get("finish_reason") or "stop"),
            prompt_tokens=count(usage.get("prompt_tokens")),
            completion_tokens=count(usage.get("completion_tokens")),
        )


def payload(model: str, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
    """The ``/chat/completions`` request body for one attempt."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [m.to_dict() for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.response_format is not None:
        body["response_format"] = json.loads(params.response_format)  # canonical JSON, validated
    offer = ToolOffer.load(params.tools)
    if offer is not None:
        body.update(offer.openai_fields())
    return body
