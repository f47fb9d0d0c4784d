"""The cloud backend against a fault-injecting loopback server: retry, backoff, fallback, errors.

Each case checks the outcome (a reply, a fallback, or one clear error class and message), how
many attempts reached the server, that it ended within a generous time budget, and that the
canary API key appears nowhere the user or a log could see it. The server echoes the key in
its error bodies, as careless providers do.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fault_server import REPLY, FaultServer, free_port

from chat import (
    AuthFailed,
    BackendTimeout,
    BadResponse,
    ChatEngine,
    ChatError,
    ContextOverflow,
    Done,
    GenerationParams,
    Message,
    Notice,
    RateLimited,
    RetryPolicy,
    Settings,
    TextDelta,
    Unavailable,
)
from chat.backends.openai_compat import (
    OpenAICompatBackend,
    Timeouts,
    estimate_text_tokens,
    retry_after,
    shared_http_client,
)
from chat.backends.openai_compat.errors import body_error, status_error
from chat.backends.openai_compat.watchdog import WATCHDOG, Watch
from chat.factory import build_engine

CANARY = "sk-CANARY-0123456789abcdefXYZ"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2, total_timeout=20)
QUESTION = [{"role": "user", "content": "Say hello."}]
PARAMS = GenerationParams(max_new_tokens=32, temperature=0)


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every test runs with httpx/httpcore at DEBUG, so a leaked key would show up in caplog."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "chat"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@dataclass
class Outcome:
    events: list = field(default_factory=list)
    error: ChatError | None = None
    elapsed: float = 0.0

    @property
    def done(self) -> Done:
        assert isinstance(self.events[-1], Done), self.error
        return self.events[-1]

    @property
    def notices(self) -> list[Notice]:
        return [e for e in self.events if isinstance(e, Notice)]

    @property
    def shown(self) -> str:
        """Everything a user could see: events, error messages, the error and its traceback."""
        parts = [repr(e) for e in self.events]
        if self.error is not None:
            parts += [str(self.error), repr(self.error), self.error.user_message("en")]
            parts += [self.error.user_message("zh"), *traceback.format_exception(self.error)]
        return "\n".join(parts)


def cloud(
    url: str, *, key: str = CANARY, read: float = 2.0, total: float = 20.0, **kw
) -> OpenAICompatBackend:
    return OpenAICompatBackend(
        url, "fault-model", api_key=key, timeouts=Timeouts(connect=2.0, read=read, total=total), **kw
    )


def run(engine: ChatEngine, messages=QUESTION, params=PARAMS, **kw) -> Outcome:  # noqa: ANN001
    out = Outcome()
    start = time.monotonic()
    try:
        for event in engine.stream(messages, params, **kw):
            out.events.append(event)
    except ChatError as exc:
        out.error = exc
    out.elapsed = time.monotonic() - start
    return out


def assert_clean(out: Outcome, caplog: pytest.LogCaptureFixture, key: str = CANARY) -> None:
    assert key not in out.shown
    assert key not in caplog.text
    assert "Authorization" not in out.shown and "Bearer" not in out.shown
    assert "Bearer" not in caplog.text


# -- success and retry -----------------------------------------------------------------------------


def test_reply_streams_with_usage_and_sends_the_key_only_to_the_server(fault, caplog) -> None:
    url = fault.url("ok")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    deltas = [e for e in out.events if isinstance(e, TextDelta)]
    assert deltas and "".join(d.text for d in deltas) == out.done.text == REPLY + " "
    stats = out.done.stats
    assert (stats.backend, stats.model, stats.finish_reason) == ("cloud", "fault-model", "stop")
    assert (stats.prompt_tokens, stats.completion_tokens, stats.retries, stats.fallback) == (11, 10, 0, False)
    assert stats.time_to_first_token is not None
    [seen] = fault.seen(url)
    assert seen.headers["authorization"] == f"Bearer {CANARY}"
    assert seen.body["stream"] is True and seen.body["stream_options"] == {"include_usage": True}
    assert seen.body["model"] == "fault-model" and seen.body["max_tokens"] == 32
    assert seen.body["messages"] == QUESTION
    assert out.elapsed < 5
    assert_clean(out, caplog)


def test_tokens_stream_as_they_arrive(fault, caplog) -> None:
    url = fault.url("ok:8:60")  # one token every 60 ms
    out = run(ChatEngine({"cloud": cloud(url)}))
    deltas = [e.text for e in out.events if isinstance(e, TextDelta)]
    assert len(deltas) >= 6 and "".join(deltas) == out.done.text == "t0 t1 t2 t3 t4 t5 t6 t7 "
    assert_clean(out, caplog)


def test_a_burst_read_at_once_is_one_delta_and_tokens_are_still_counted(fault, caplog) -> None:
    out = run(ChatEngine({"cloud": cloud(fault.url("burst"))}))
    deltas = [e.text for e in out.events if isinstance(e, TextDelta)]
    assert deltas == [REPLY + " "]
    assert out.done.stats.completion_tokens == len(REPLY.split())  # no usage chunk: events counted
    assert_clean(out, caplog)


def test_429_with_retry_after_is_honoured_then_succeeds(fault, caplog) -> None:
    url = fault.url("status:429:0.4", "ok")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text.startswith("Hello") and out.done.stats.retries == 1
    assert fault.attempts(url) == 2
    gap = fault.seen(url)[1].started - fault.seen(url)[0].started
    assert 0.35 <= gap < 5  # waited what the server asked, not the 0.05 s backoff
    assert out.elapsed < 10
    assert_clean(out, caplog)


def test_500_then_503_with_retry_after_ms_then_success(fault, caplog) -> None:
    url = fault.url("status:500", "status_ms:503:300", "ok")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text.startswith("Hello") and out.done.stats.retries == 2
    assert fault.attempts(url) == 3
    seen = fault.seen(url)
    assert seen[2].started - seen[1].started >= 0.28
    assert out.elapsed < 10
    assert_clean(out, caplog)


def test_retries_are_bounded_then_the_error_is_clear(fault, caplog) -> None:
    url = fault.url("status:503")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert isinstance(out.error, Unavailable)
    assert out.error.user_message() == "The model service is unavailable (cloud). Please try again shortly."
    assert fault.attempts(url) == 3
    assert out.elapsed < 10
    assert_clean(out, caplog)


def test_retry_after_beyond_the_limit_falls_back_at_once(fault, caplog) -> None:
    url, spare = fault.url("status:429:3600"), fault.url("ok")
    engine = ChatEngine(
        {"cloud": cloud(url), "spare": cloud(spare, name="spare")}, fallback=["spare"], retry=FAST_RETRY
    )
    out = run(engine)
    assert (fault.attempts(url), fault.attempts(spare)) == (1, 1)
    assert out.done.stats.backend == "spare" and out.done.stats.fallback
    assert [n.kind for n in out.notices] == ["fallback"]
    assert "rate-limiting" in out.notices[0].text
    assert out.elapsed < 5
    assert_clean(out, caplog)


def test_insufficient_quota_and_x_should_retry_false_are_not_retried() -> None:
    # x-should-retry: false is honoured (the status step cannot send it, so check the mapping)
    import httpx

    response = httpx.Response(500, headers={"x-should-retry": "false"})
    error = status_error(response, b"{}", backend="cloud", key=CANARY)
    assert isinstance(error, Unavailable) and not error.retryable
    quota = body_error(
        {"error": {"code": "insufficient_quota", "message": CANARY}}, status=429, backend="cloud", key=CANARY
    )
    assert isinstance(quota, RateLimited) and not quota.retryable and CANARY not in str(quota)


# -- connection failures ---------------------------------------------------------------------------


def test_connection_refused_retries_then_falls_back_to_the_local_model(local_backend, caplog) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    engine = ChatEngine({"cloud": cloud(dead), "local": local_backend}, fallback=["local"], retry=FAST_RETRY)
    out = run(engine, params=GenerationParams(max_new_tokens=16, temperature=0))
    assert engine.counters["retries"] == 2  # three attempts at the dead port, then the fallback
    assert out.done.text.strip()
    assert out.done.stats.backend == "local" and out.done.stats.fallback
    notice = out.notices[0]  # then perhaps "length": 16 tokens is short
    assert notice.kind == "fallback" and "unavailable" in notice.text
    assert out.elapsed < 20
    assert_clean(out, caplog)


def test_reset_before_headers_is_retried(fault, caplog) -> None:
    url = fault.url("reset", "ok")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text.startswith("Hello") and out.done.stats.retries == 1
    assert fault.attempts(url) == 2
    assert out.elapsed < 5
    assert_clean(out, caplog)


def test_reset_mid_stream_keeps_the_partial_reply_without_retry(fault, caplog) -> None:
    url = fault.url("midreset", "ok")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert fault.attempts(url) == 1  # text reached the user: never retried
    assert out.done.text == "Hello from the "
    assert out.done.stats.finish_reason == "error"
    assert [n.kind for n in out.notices] == ["interrupted"]
    assert "unavailable" in out.notices[0].text
    assert out.elapsed < 5
    assert_clean(out, caplog)


# -- malformed and unexpected responses --------------------------------------------------------------


def test_malformed_sse_line_before_any_text_is_a_bad_response(fault, caplog) -> None:
    url = fault.url("malformed")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert isinstance(out.error, BadResponse)
    assert out.error.user_message() == "The model service sent an unexpected response (cloud)."
    assert fault.attempts(url) == 1  # not retryable
    assert out.elapsed < 5
    assert_clean(out, caplog)


def test_malformed_sse_line_after_text_keeps_the_text(fault, caplog) -> None:
    url = fault.url("malformed_late")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text == "Partial " and [n.kind for n in out.notices] == ["interrupted"]
    assert fault.attempts(url) == 1
    assert_clean(out, caplog)


def test_json_error_body_where_sse_was_expected(fault, caplog) -> None:
    url = fault.url("jsonerr")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert isinstance(out.error, Unavailable)  # type server_error: worth retrying
    assert fault.attempts(url) == 3
    assert "exploded" not in out.shown  # the provider's text is never passed on
    assert out.elapsed < 10
    assert_clean(out, caplog)


def test_a_server_that_ignores_stream_true_still_answers(fault, caplog) -> None:
    url = fault.url("json_reply")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text == REPLY and out.done.stats.completion_tokens == 10
    assert fault.attempts(url) == 1
    assert_clean(out, caplog)


def test_error_object_inside_the_stream_ends_the_reply_with_a_notice(fault, caplog) -> None:
    url = fault.url("error_event")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text == "Partial " and [n.kind for n in out.notices] == ["interrupted"]
    assert "overloaded" not in out.shown
    assert_clean(out, caplog)


def test_eof_without_done_or_finish_reason_is_an_error(fault, caplog) -> None:
    url = fault.url("eof")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text == "Hello from the " and out.done.stats.finish_reason == "error"
    assert [n.kind for n in out.notices] == ["interrupted"]
    empty = fault.url("eof_empty")  # llama_cpp.server's streamed overflow: nothing, then EOF
    out = run(ChatEngine({"cloud": cloud(empty)}, retry=FAST_RETRY))
    assert isinstance(out.error, Unavailable) and fault.attempts(empty) == 3
    assert_clean(out, caplog)


def test_done_without_finish_reason_is_not_a_clean_stop(fault, caplog) -> None:
    url = fault.url("done_only")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert out.done.text == "Cut " and out.done.stats.finish_reason == "unknown"
    assert_clean(out, caplog)


# -- timeouts ----------------------------------------------------------------------------------------


def test_stall_after_headers_times_out_on_read_and_is_retried(fault, caplog) -> None:
    url = fault.url("stall")
    out = run(ChatEngine({"cloud": cloud(url, read=0.5)}, retry=FAST_RETRY))
    assert isinstance(out.error, BackendTimeout)
    assert out.error.user_message() == "The model service did not answer in time (cloud)."
    assert fault.attempts(url) == 3
    assert 1.4 <= out.elapsed < 8  # three read timeouts of 0.5 s, plus backoff
    assert_clean(out, caplog)


def test_stall_before_the_first_byte_times_out(fault, caplog) -> None:
    url = fault.url("stall_head")
    out = run(ChatEngine({"cloud": cloud(url, read=0.5)}, retry=RetryPolicy(max_attempts=2, base_delay=0.05)))
    assert isinstance(out.error, BackendTimeout) and fault.attempts(url) == 2
    assert out.elapsed < 6
    assert_clean(out, caplog)


def test_a_trickle_that_defeats_the_read_timeout_still_ends_within_the_total(fault, caplog) -> None:
    url = fault.url("trickle")
    retry = RetryPolicy(max_attempts=5, base_delay=0.05, total_timeout=2.5)
    out = run(ChatEngine({"cloud": cloud(url, read=1.0, total=30)}, retry=retry))
    assert isinstance(out.error, BackendTimeout)
    assert out.elapsed < 2.5 + 2  # the engine's total bounds every attempt, not only the first
    assert_clean(out, caplog)


def test_every_failure_in_a_fallback_chain_ends_within_the_total_time(fault, caplog) -> None:
    a, b = fault.url("stall"), fault.url("stall_head")
    retry = RetryPolicy(max_attempts=10, base_delay=0.05, total_timeout=3)
    engine = ChatEngine(
        {"cloud": cloud(a, read=0.7), "other": cloud(b, read=0.7, name="other")},
        fallback=["other"],
        retry=retry,
    )
    out = run(engine)
    assert isinstance(out.error, BackendTimeout)
    assert out.elapsed < 3 + 2
    assert_clean(out, caplog)


# -- credentials ----------------------------------------------------------------------------------------


def test_401_says_check_your_api_key_and_is_not_retried(fault, caplog) -> None:
    url = fault.url("status:401")
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY))
    assert isinstance(out.error, AuthFailed)
    assert "check your API key" in out.error.user_message()
    assert "请检查 API 密钥" in out.error.user_message("zh")
    assert fault.attempts(url) == 1
    assert out.elapsed < 5
    assert_clean(out, caplog)


def test_a_session_key_replaces_the_configured_one_for_that_request_only(fault, caplog) -> None:
    url = fault.url("status:401", "ok")
    session_key = "sk-SESSION-only-for-this-tab-42"
    engine = ChatEngine({"cloud": cloud(url, key="")}, retry=FAST_RETRY)
    out = run(engine, api_key=session_key)
    assert isinstance(out.error, AuthFailed)
    assert fault.seen(url)[0].headers["authorization"] == f"Bearer {session_key}"
    out2 = run(engine)
    assert out2.done.text.startswith("Hello")
    assert "authorization" not in fault.seen(url)[1].headers  # not remembered by the backend
    assert session_key not in repr(engine.backends["cloud"]) and session_key not in repr(vars(engine))
    assert_clean(out, caplog, key=session_key)


def test_a_key_that_a_header_cannot_carry_is_refused_before_sending(fault, caplog) -> None:
    url = fault.url("ok")
    bad = CANARY + "\nX-Injected: 1"
    out = run(ChatEngine({"cloud": cloud(url, key=bad)}, retry=FAST_RETRY))
    assert isinstance(out.error, AuthFailed) and fault.attempts(url) == 0
    assert_clean(out, caplog)


# -- context length -----------------------------------------------------------------------------------


def _history(turns: int, size: int = 400) -> list[dict[str, str]]:
    msgs = []
    for i in range(turns):
        msgs.append(
            {"role": "user", "content": f"Question {i}: " + "tell me more about the sea " * (size // 27)}
        )
        msgs.append(
            {"role": "assistant", "content": f"Answer {i}: " + "the sea is wide and deep " * (size // 25)}
        )
    return [*msgs, {"role": "user", "content": "And now, a final short question?"}]


def test_context_length_400_refits_the_history_with_the_usual_notice(fault, caplog) -> None:
    url = fault.url("ctx:700")
    params = GenerationParams(max_new_tokens=64, context_length=8192)
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY), _history(10), params)
    assert out.done.text.startswith("Hello")
    assert fault.attempts(url) == 2 and out.done.stats.retries == 0
    first, second = fault.seen(url)
    assert len(second.body["messages"]) < len(first.body["messages"]) == 21
    assert second.body["messages"][-1]["content"] == "And now, a final short question?"
    [notice] = out.notices
    assert notice.kind == "trimmed" and "left out" in notice.text
    assert out.done.stats.dropped_messages == 21 - len(second.body["messages"])
    assert_clean(out, caplog)


def test_context_error_without_figures_shrinks_a_bounded_number_of_times(fault, caplog) -> None:
    url = fault.url("ctx_plain:150")
    params = GenerationParams(max_new_tokens=16, context_length=8192)
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY), _history(30, 200), params)
    assert isinstance(out.error, ContextOverflow)
    assert 2 <= fault.attempts(url) <= 4  # one try plus at most three re-fits
    message = out.error.user_message()
    needed, available = out.error.fields["needed"], out.error.fields["available"]
    assert needed > available and f"needs {needed} tokens" in message
    assert_clean(out, caplog)


def test_a_message_too_long_for_the_provider_is_a_clear_overflow(fault, caplog) -> None:
    url = fault.url("ctx:300")
    long = [{"role": "user", "content": "word " * 2000}]
    out = run(ChatEngine({"cloud": cloud(url)}, retry=FAST_RETRY), long, GenerationParams(max_new_tokens=32))
    assert isinstance(out.error, ContextOverflow)
    assert "too long for the context window" in out.error.user_message()
    assert out.error.fields["needed"] > out.error.fields["available"]
    assert fault.attempts(url) == 1
    assert_clean(out, caplog)


def test_a_configured_context_window_caps_and_trims_before_sending(fault, caplog) -> None:
    url = fault.url("ok")
    backend = cloud(url, context_window=600)
    out = run(
        ChatEngine({"cloud": backend}), _history(10), GenerationParams(max_new_tokens=64, context_length=4096)
    )
    assert [n.kind for n in out.notices] == ["context_capped", "trimmed"]
    assert backend.count_tokens([Message(**m) for m in fault.seen(url)[0].body["messages"]]) <= 600 - 64
    assert_clean(out, caplog)


# -- stop, cancel, pooling ----------------------------------------------------------------------------


def test_closing_the_engine_iterator_closes_the_http_stream_at_once(fault, caplog) -> None:
    url = fault.url("ok:400:20")  # 400 tokens, one every 20 ms: 8 s if nobody stops it
    events = ChatEngine({"cloud": cloud(url)}).stream(QUESTION, PARAMS)
    deltas = 0
    for event in events:
        deltas += isinstance(event, TextDelta)
        if deltas == 3:
            break
    closed = time.monotonic()
    events.close()
    deadline = time.monotonic() + 5
    [seen] = fault.seen(url)
    while seen.disconnected is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen.disconnected is not None and seen.disconnected - closed < 2.0
    assert seen.chunks_sent < 200  # of 400: generation did not run on


def test_cancel_from_another_thread_cuts_a_stalled_stream(fault, caplog) -> None:
    url = fault.url("stall")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    out = run(ChatEngine({"cloud": cloud(url, read=30)}), cancel=cancel)
    assert out.done.stats.finish_reason == "cancelled"
    assert out.elapsed < 3  # the 30 s read timeout did not have to run out
    assert fault.attempts(url) == 1
    assert_clean(out, caplog)


def test_a_finished_stream_is_disarmed_before_its_connection_can_be_reused() -> None:
    """The watchdog must never cut a socket the pool has handed to another request."""
    import httpx

    watch = Watch(time.monotonic() + 60, None)
    armed_at_close: list[bool] = []

    class Body(httpx.SyncByteStream):
        def __iter__(self):  # noqa: ANN204
            yield b"data: [DONE]\n\n"

        def close(self) -> None:  # where httpcore returns the connection to the pool
            armed_at_close.append(WATCHDOG.watching(watch))

    response = httpx.Response(200, stream=Body(), request=httpx.Request("POST", "http://x"))
    WATCHDOG.add(watch, response)
    assert WATCHDOG.watching(watch)
    list(response.iter_raw())  # httpx closes the response itself when the body ends
    assert armed_at_close == [False]


def test_keep_alive_reuses_one_connection_for_sequential_replies(fault) -> None:
    backend = cloud(fault.url("ok"))
    engine = ChatEngine({"cloud": backend})
    before = fault.stats.connections
    for _ in range(5):
        assert engine.reply(QUESTION, PARAMS).text.startswith("Hello")
    assert fault.stats.connections - before == 1


def test_concurrent_sessions_share_one_client(fault) -> None:
    client = shared_http_client()
    url = fault.url("ok:20:5")
    engine = ChatEngine({"cloud": cloud(url, client=client)})
    results: list[str] = []

    def chat() -> None:
        results.append(engine.reply(QUESTION, PARAMS).text)

    threads = [threading.Thread(target=chat) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 20 and all(r.startswith("t0 t1") for r in results)
    assert fault.attempts(url) == 20
    assert not len(WATCHDOG)  # every stream unregistered itself


# -- factory and helpers ------------------------------------------------------------------------------


def test_factory_builds_cloud_on_the_shared_client_without_loading_the_local_model(fault) -> None:
    settings = Settings(backend="cloud", api_base_url=fault.url("ok"), api_model="m", api_key=CANARY)
    engine = build_engine(settings)
    other = build_engine(settings)
    assert list(engine.backends) == ["cloud"]
    assert engine.backends["cloud"].http_client is other.backends["cloud"].http_client is shared_http_client()
    assert CANARY not in repr(settings) and CANARY not in repr(engine.backends["cloud"])
    assert engine.reply(QUESTION, PARAMS).text.startswith("Hello")


def test_retry_after_header_forms() -> None:
    import email.utils

    import httpx

    assert retry_after(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after(httpx.Headers({"retry-after": "1.5"})) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after(httpx.Headers({"retry-after": date})) <= 31
    assert retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after(httpx.Headers({})) is None


def test_token_estimate_counts_cjk_per_character() -> None:
    english = "The quick brown fox jumps over the lazy dog."
    assert 9 <= estimate_text_tokens(english) <= 13
    assert estimate_text_tokens("你好，世界") >= 4
    assert estimate_text_tokens("1234567890") == 10


def test_bad_configuration_is_refused_early() -> None:
    from chat import ConfigError

    with pytest.raises(ConfigError):
        OpenAICompatBackend("api.openai.com/v1", "gpt")
    with pytest.raises(ConfigError):
        OpenAICompatBackend("https://api.openai.com/v1", " ")
