"""The engine: every request, from every entry point, takes this one path.

    input guard -> per backend: fit context -> cache -> stream (retry before the first token)
    -> output guard -> cache store; on failure, the next backend in the fallback chain.

It yields events (``chat.messages``), never bare strings, so a notice, a queue position, a
cache hit or a fallback looks the same to the UI, the HTTP APIs and the tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chat.backends.base import Backend, Finish
from chat.backends.tool_text import for_tools
from chat.engine.cache import session_salt
from chat.engine.counters import Counters
from chat.engine.protocols import InputGuard, OutputGuard, ResponseCache
from chat.engine.reasoning import ReplyParts, without_thinking
from chat.engine.retry import RetryPolicy
from chat.engine.window import FittedPrompt, final_overflow, fit_messages, smaller_window
from chat.errors import BackendError, ContextOverflow, InputBlocked, InvalidRequest, OutputBlocked
from chat.i18n import Lang, detect_language, t
from chat.messages import (
    Done,
    Event,
    GenerationParams,
    Message,
    Notice,
    Stats,
    TextDelta,
    ToolCall,
    Waiting,
    system_end,
)
from chat.messages import last_user as _last_user

CACHE_REPLAY_CHUNK = 16  # characters per replayed delta: a cache hit still streams
MAX_REFITS = 3  # re-fits after a context-length error from a backend that only estimates tokens


@dataclass(frozen=True)
class _Request:
    """One reply's inputs, as every backend in the chain sees them."""

    messages: list[Message]
    params: GenerationParams
    lang: Lang
    cancel: threading.Event | None
    api_key: str | None
    started: float
    deadline: float
    fallback: bool


@dataclass(frozen=True)
class _Outcome:
    """How one backend call ended: the text shown, its figures and the prompt it answered."""

    text: str
    stats: Stats
    prompt: tuple[Message, ...]
    thinking: str = ""
    calls: tuple[ToolCall, ...] = ()  # tool calls the model asked for


class _Retry(Exception):  # noqa: N818 - a signal, not an error
    """A backend failed before any text: the caller may retry it."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(str(error))
        self.error = error


class ChatEngine:
    """Streams guarded replies from an ordered chain of backends.

    >>> engine = ChatEngine({"local": backend})
    >>> for event in engine.stream([Message("user", "Hi")], GenerationParams(temperature=0)):
    ...     print(event)
    """

    def __init__(
        self,
        backends: Mapping[str, Backend],
        *,
        fallback: Sequence[str] = (),
        retry: RetryPolicy | None = None,
        input_guard: InputGuard | None = None,
        output_guard: OutputGuard | None = None,
        cache: ResponseCache | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not backends:
            raise ValueError("at least one backend is needed")
        self.backends = dict(backends)
        self.fallback = [name for name in fallback if name in self.backends]
        self.retry = retry or RetryPolicy()
        self.input_guard = input_guard
        self.output_guard = output_guard
        self.cache = cache
        self.counters = Counters()
        self._clock = clock
        self.tools: Any = None  # the operator's MCP tools (chat.tools.ToolRegistry), set by the app

    @property
    def default_backend(self) -> str:
        return next(iter(self.backends))

    def chain(self, backend: str | None = None) -> list[Backend]:
        """The backends to try, in order: the chosen one, then the configured fallbacks."""
        first = backend or self.default_backend
        if first not in self.backends:
            raise InvalidRequest(
                reason="invalid.unknown_backend", backend=repr(first), available=", ".join(self.backends)
            )
        names = [first, *(n for n in self.fallback if n != first)]
        return [self.backends[n] for n in names]

    def stream(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        params: GenerationParams | None = None,
        *,
        backend: str | None = None,
        cancel: threading.Event | None = None,
        use_cache: bool = True,
        api_key: str | None = None,
        notes: Sequence[Message] = (),
        reference: str = "",
        lang: Lang | None = None,
        checked: bool = False,
    ) -> Iterator[Event]:
        """Yield events for one reply; the last one is ``Done``. Errors raise ``ChatError``.

        ``lang`` is the user's language when the caller already knows it; ``checked`` says the
        caller's input guard has passed these messages (the reply pipeline runs it once per turn,
        before anything is stored), so it does not run again here.

        ``notes``: system messages the app adds after the system prompt (a summary, a profile,
        how to read reference data); ``reference``: text put before the newest message (retrieved
        document chunks), where it leaves the prompt cache's prefix (system prompt, notes,
        history) unchanged from turn to turn. Both are fitted and sent but not checked by the
        input guard, which judges what users write: a manual's "default PIN 0000" must not
        refuse the question it answers. Closing the iterator stops generation and frees the model.
        """
        params = params or GenerationParams()
        msgs = without_thinking(_checked_messages(messages))  # thinking is never context
        newest = _last_user(msgs)
        lang = lang or detect_language(msgs[newest].content)
        chain = self.chain(backend)
        self.counters.add("requests")
        if not checked:
            self.check_input(msgs[: newest + 1])  # tool results after it are data
        if notes:
            at = system_end(msgs)
            msgs = [*msgs[:at], *notes, *msgs[at:]]
        msgs[_last_user(msgs)] = with_reference(msgs[_last_user(msgs)], reference)
        started = self._clock()
        deadline = started + self.retry.total_timeout
        last_error: BackendError | None = None
        for index, candidate in enumerate(chain):
            if index:
                self.counters.add("fallbacks")
                previous = chain[index - 1]
                yield Notice(
                    "fallback",
                    t(
                        "notice.fallback",
                        lang,
                        backend=candidate.name,
                        model=candidate.model,
                        failed=previous.name,
                        reason=last_error.user_message(lang),
                    ),
                )
            request = _Request(msgs, params, lang, cancel, api_key, started, deadline, index > 0)
            try:
                yield from self._stream_backend(candidate, request, use_cache=use_cache)
                return
            except BackendError as exc:
                self.counters.add("errors")
                last_error = exc
                if self._clock() >= deadline:
                    break
        assert last_error is not None
        raise last_error

    def check_input(self, messages: Sequence[Message], *, moderate: bool = True) -> None:
        """Run the input guard (limits, rules, moderation); raise and count a refusal.

        ``stream`` calls it; the UI also calls it before a message enters the chat history,
        so a refused message (it may hold a password) is never shown back or saved.
        """
        if self.input_guard is None:
            return
        try:
            self.input_guard.check(messages, moderate=moderate)
        except InputBlocked:
            self.counters.add("blocked_input")
            raise

    def reply(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        params: GenerationParams | None = None,
        **kwargs: Any,
    ) -> Done:
        """Run a reply to the end and return its ``Done`` event."""
        for event in self.stream(messages, params, **kwargs):
            if isinstance(event, Done):
                return event
        raise AssertionError("engine stream ended without Done")

    # -- one backend ---------------------------------------------------------------------------

    def _stream_backend(self, backend: Backend, request: _Request, *, use_cache: bool) -> Iterator[Event]:
        """Fit, then answer from the cache or the backend; the last event is ``Done``."""
        backend = for_tools(backend, request.params, request.messages)  # a model without a tool API
        yield from backend.prepare(request.cancel)
        fitted = yield from self._fit(backend, request)
        stats = Stats(
            backend=backend.name,
            model=backend.model,
            prompt_tokens=fitted.prompt_tokens,
            dropped_messages=fitted.dropped,
            fallback=request.fallback,
        )
        key = None
        if self.cache is not None and use_cache:
            key = self.cache.key(backend, fitted.messages, request.params, salt=session_salt(request.api_key))
            cached = self.cache.get(key)
            if cached is not None:
                self.counters.add("cache_hits")
                yield from self._replay(cached, stats, request.started)
                return
            self.counters.add("cache_misses")
        outcome = yield from self._generate(backend, request, fitted, stats)
        if key is not None and outcome.stats.finish_reason == "stop" and outcome.text:
            if outcome.prompt != fitted.messages:  # re-fitted: the reply answers a shorter prompt
                key = self.cache.key(
                    backend, outcome.prompt, request.params, salt=session_salt(request.api_key)
                )
            self.cache.put(key, outcome.text)  # the reply only: thinking is not replayed
        yield Done(outcome.text, outcome.stats, outcome.thinking, outcome.calls)

    def _fit(self, backend: Backend, request: _Request, window: int | None = None) -> Iterator[Event]:
        """Fit the conversation into the window (``yield from`` returns the ``FittedPrompt``)."""
        params, lang = request.params, request.lang
        if window is None:
            window = params.context_length
            hard_limit = backend.context_window()
            if hard_limit is not None and window > hard_limit:
                yield Notice(
                    "context_capped", t("notice.ctx_capped", lang, requested=window, used=hard_limit)
                )
                window = hard_limit
        fitted = fit_messages(
            request.messages,
            window=window,
            max_new_tokens=params.max_new_tokens,
            count=backend.count_tokens,
            cost=backend.message_tokens,
        )
        if fitted.dropped:
            yield Notice("trimmed", t("notice.trimmed", lang, count=fitted.dropped))
        if fitted.notes_dropped:
            yield Notice("notes_dropped", t("notice.notes_dropped", lang))
        if fitted.reply_tokens < params.max_new_tokens:
            yield Notice(
                "reply_budget",
                t("notice.reply_budget", lang, tokens=fitted.reply_tokens, asked=params.max_new_tokens),
            )
        return fitted

    def _generate(
        self, backend: Backend, request: _Request, fitted: FittedPrompt, stats: Stats
    ) -> Iterator[Event]:
        """Stream from the backend, retrying before the first token and re-fitting on an
        estimated overflow (``yield from`` returns the ``_Outcome``, not yet yielded)."""
        attempt = refits = 0
        window = request.params.context_length
        while True:
            attempt += 1
            stats.retries = attempt - 1
            try:
                return (yield from self._attempt(backend, request, fitted, stats))
            except ContextOverflow as exc:
                # An estimating backend (a cloud API) was wrong about the prompt's size: re-fit
                # the history into a smaller window, with the same trimming and notice.
                if backend.exact_token_count:
                    raise
                window = smaller_window(
                    min(window, fitted.prompt_tokens + fitted.reply_tokens),
                    fitted.prompt_tokens,
                    fitted.reply_tokens,
                    exc,
                )
                if refits >= MAX_REFITS:
                    raise final_overflow(exc, fitted.prompt_tokens, window, fitted.reply_tokens) from None
                refits += 1
                attempt -= 1  # a re-fit is not a retry
                fitted = yield from self._fit(backend, request, window)
                stats.prompt_tokens, stats.dropped_messages = fitted.prompt_tokens, fitted.dropped
            except _Retry as retry:
                delay = self.retry.delay(attempt, retry.error)
                if delay is None or self._clock() + delay >= request.deadline:
                    raise retry.error from None
                self.counters.add("retries")
                if _sleep(delay, request.cancel):
                    raise retry.error from None

    def _attempt(
        self, backend: Backend, request: _Request, fitted: FittedPrompt, stats: Stats
    ) -> Iterator[Event]:
        """One call to the backend, through the output guard (returns the ``_Outcome``)."""
        lang = request.lang
        params = request.params
        if fitted.reply_tokens != params.max_new_tokens:
            params = replace(params, max_new_tokens=fitted.reply_tokens)
        received = 0  # chunks, thinking included: the token count when the backend has none
        shown: list[str] = []
        thought: list[str] = []
        calls: list[ToolCall] = []
        finish = Finish("stop")
        first_token_at: float | None = None
        parts = ReplyParts(self.output_guard.new_filter if self.output_guard is not None else None)
        budget = {"time_left": request.deadline - self._clock()} if backend.accepts_time_left else {}

        def settled(tokens: int, tool_calls: tuple[ToolCall, ...] = ()) -> _Outcome:
            """The reply as the user saw it, with its figures (``tokens``: the reply's count)."""
            text, thinking = parts.settle("".join(shown), "".join(thought))
            figures = self._finish_stats(stats, request.started, first_token_at, tokens)
            return _Outcome(text, figures, fitted.messages, thinking, tool_calls)

        chunks = backend.stream(
            fitted.messages, params, cancel=request.cancel, api_key=request.api_key, **budget
        )
        try:
            for chunk in chunks:
                if isinstance(chunk, Waiting):
                    yield chunk
                elif isinstance(chunk, Finish):
                    finish = chunk
                elif isinstance(chunk, ToolCall):
                    calls.append(chunk)
                elif chunk:
                    if first_token_at is None:
                        first_token_at = self._clock()
                    received += 1
                    for part in parts.feed(chunk):
                        (shown if isinstance(part, TextDelta) else thought).append(part.text)
                        yield part
            for part in parts.flush():
                (shown if isinstance(part, TextDelta) else thought).append(part.text)
                yield part
        except OutputBlocked as exc:
            self.counters.add("blocked_output")
            stats.extra["guard_category"] = exc.fields.get("category", "")  # for the operator page
            notice = t("error.output_blocked", lang)
            yield Notice("blocked", notice)
            stats.finish_reason = "blocked"
            return _Outcome(
                notice, self._finish_stats(stats, request.started, first_token_at, received), fitted.messages
            )
        except BackendError as exc:
            if not received:
                raise _Retry(exc) from None
            # Text already reached the user: keep it, say what happened, no retry.
            self.counters.add("errors")
            yield Notice("interrupted", exc.user_message(lang))
            stats.finish_reason = "error"
            return settled(received)
        finally:
            chunks.close()
        _take_finish(stats, finish)
        if finish.reason == "length":
            yield Notice("length", t("notice.length", lang))
        elif finish.reason == "timeout":
            yield Notice("timeout", t("notice.timeout", lang))
        tokens = finish.completion_tokens if finish.completion_tokens is not None else received
        return settled(tokens, tuple(calls))

    def _replay(self, text: str, stats: Stats, started: float) -> Iterator[Event]:
        first_token_at = self._clock()
        for i in range(0, len(text), CACHE_REPLAY_CHUNK):
            yield TextDelta(text[i : i + CACHE_REPLAY_CHUNK])
        stats.from_cache = True
        stats.finish_reason = "stop"
        yield Done(text, self._finish_stats(stats, started, first_token_at, 0))

    def _finish_stats(self, stats: Stats, started: float, first_token_at: float | None, tokens: int) -> Stats:
        now = self._clock()
        stats.completion_tokens = tokens
        stats.total_time = now - started
        if first_token_at is not None:
            stats.time_to_first_token = first_token_at - started
            decode_time = now - first_token_at
            if tokens > 1 and decode_time > 0:
                stats.tokens_per_second = (tokens - 1) / decode_time
        return stats


def with_reference(message: Message, reference: str) -> Message:
    """``message`` as the backend receives it with ``reference`` text before it."""
    return Message(message.role, f"{reference}\n\n{message.content}") if reference else message


def _checked_messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise InvalidRequest(reason="invalid.messages")
    msgs = [m if isinstance(m, Message) else Message.from_dict(m) for m in messages]
    if not msgs or msgs[-1].role not in ("user", "tool") or all(m.role != "user" for m in msgs):
        raise InvalidRequest(reason="invalid.last_user")  # a tool result answers the user's turn
    if not msgs[_last_user(msgs)].content.strip():
        raise InvalidRequest(reason="error.empty")
    return msgs


def _take_finish(stats: Stats, finish: Finish) -> None:
    """The backend's own figures for the reply, where it gave them."""
    stats.finish_reason = finish.reason
    if finish.prompt_tokens is not None:
        stats.prompt_tokens = finish.prompt_tokens
    if finish.cached_prompt_tokens is not None:
        stats.cached_prompt_tokens = finish.cached_prompt_tokens
        stats.evaluated_prompt_tokens = stats.prompt_tokens - finish.cached_prompt_tokens


def _sleep(seconds: float, cancel: threading.Event | None) -> bool:
    """Sleep, waking early on cancel; True when cancelled."""
    if cancel is None:
        time.sleep(seconds)
        return False
    return cancel.wait(seconds)
