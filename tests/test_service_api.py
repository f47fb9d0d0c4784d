"""The service routes of the launched app (REST, SSE, OpenAI, WebSocket, health, metrics, logs).

One app on a free port, the real embedded model behind it, with a word-list guard and a dict
cache so refusals and cache hits are visible. Replies are compared with the engine's own at
temperature 0, where SmolLM2 is deterministic.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from service_support import BLOCKED_WORD, metric, scrape, serve, service_engine, sse_events
from websockets.sync.client import connect

from chat import ChatEngine, GenerationParams

LONG_TASK = "Count from 1 to 600, separated by commas."
# Greedy, it runs to its budget; sampled at 0.7 it sometimes stopped after 11 tokens, before the
# test could see the model busy (measured).
HOLD_THE_MODEL = {"max_new_tokens": 1500, "temperature": 0}
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def base(local_backend) -> Iterator[str]:
    with serve(service_engine(local_backend), max_body_bytes=MAX_BODY, log_format="json") as url:
        yield url


@pytest.fixture
def access_lines() -> Iterator[list[dict]]:
    """JSON request-log lines written while the test runs."""
    lines: list[dict] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("{"):
                lines.append(json.loads(text))

    handler = Capture()
    logger = logging.getLogger("chat.access")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def chat(base: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(base + "api/chat", json=body, timeout=120, **kwargs)


def greedy(max_new_tokens: int = 24) -> dict:
    return {"temperature": 0, "max_new_tokens": max_new_tokens}


def wait_idle(backend, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while backend.queue_depth and time.monotonic() < deadline:
        time.sleep(0.02)


# --- /api/chat -----------------------------------------------------------------------------------


def test_api_chat_returns_the_reply_and_its_stats(base: str, engine: ChatEngine) -> None:
    question = "What is the capital of Italy?"
    response = chat(base, {"user_input": question, "context": greedy()})
    assert response.status_code == 200
    body = response.json()
    expected = engine.reply([{"role": "user", "content": question}], GenerationParams(**greedy()))
    assert body["reply"] == expected.text
    assert body["backend"] == "local"
    assert body["model"] == expected.stats.model
    assert body["completion_tokens"] == expected.stats.completion_tokens
    assert body["prompt_tokens"] == expected.stats.prompt_tokens
    assert body["time_to_first_token"] > 0 and body["total_time"] >= body["time_to_first_token"]
    assert body["from_cache"] is False and body["blocked"] is False
    assert body["id"] == response.headers["x-request-id"]


def test_history_and_system_prompt_reach_the_model(base: str, engine: ChatEngine) -> None:
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
    ]
    system = "Answer in one short sentence."
    context = {"history": history, "system_prompt": system, **greedy(20)}
    body = chat(base, {"user_input": "What is my name?", "context": context}).json()
    expected = engine.reply(
        [{"role": "system", "content": system}, *history, {"role": "user", "content": "What is my name?"}],
        GenerationParams(**greedy(20)),
    )
    assert body["reply"] == expected.text


def test_repeated_request_is_a_cache_hit(base: str) -> None:
    request = {"user_input": "Name a fruit.", "context": greedy(32)}
    first = chat(base, request).json()
    second = chat(base, request).json()
    assert first["from_cache"] is False
    assert second["from_cache"] is True
    assert second["reply"] == first["reply"]


def test_stream_true_sends_server_sent_events(base: str) -> None:
    request = {"user_input": "Describe a sunny day.", "stream": True, "context": {"max_new_tokens": 24}}
    with httpx.stream("POST", base + "api/chat", json=request, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        events = list(sse_events(response.iter_lines()))
    names = [name for name, _ in events]
    assert names.count("delta") >= 3
    assert names[-1] == "done"
    deltas = "".join(json.loads(data)["text"] for name, data in events if name == "delta")
    done = json.loads(events[-1][1])
    assert done["reply"] == deltas
    assert done["completion_tokens"] > 0


def test_filtered_message_is_answered_with_the_refusal(base: str) -> None:
    body = chat(base, {"user_input": f"Tell me about {BLOCKED_WORD}."}).json()
    assert body["blocked"] is True
    assert body["finish_reason"] == "blocked"
    assert body["reply"] == "Sorry, I can't help with that request."
    chinese = chat(base, {"user_input": f"请介绍一下{BLOCKED_WORD}。", "stream": True})
    events = list(sse_events(chinese.iter_lines()))
    assert [name for name, _ in events] == ["done"]
    assert json.loads(events[0][1])["reply"] == "抱歉，我无法协助处理这个请求。"


@pytest.mark.parametrize("stream", [False, True])
def test_context_overflow_is_a_400_before_any_stream(base: str, stream: bool) -> None:
    request = {
        "user_input": "word " * 3000,
        "stream": stream,
        "context": {"context_length": 1024, "max_new_tokens": 64},
    }
    response = chat(base, request)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "context_overflow"
    assert "too long for the context window" in error["message"]


def test_request_id_is_taken_from_the_caller(base: str) -> None:
    response = chat(
        base, {"user_input": "Say ok.", "context": greedy(4)}, headers={"X-Request-ID": "trace-42"}
    )
    assert response.headers["x-request-id"] == "trace-42"
    assert response.json()["id"] == "trace-42"


def test_closing_the_event_stream_frees_the_model(base: str, local_backend) -> None:
    request = {"user_input": LONG_TASK, "stream": True, "context": HOLD_THE_MODEL}
    with httpx.stream("POST", base + "api/chat", json=request, timeout=120) as response:
        deltas = 0
        for name, _ in sse_events(response.iter_lines()):
            deltas += name == "delta"
            if deltas == 5:
                break
        assert local_backend.queue_depth == 1
    started = time.monotonic()
    wait_idle(local_backend)
    assert local_backend.queue_depth == 0
    assert time.monotonic() - started < 15  # 1500 tokens would take far longer
    # the gauge drops as the request's handler unwinds, just after the model is freed
    deadline = time.monotonic() + 5
    while metric(scrape(base), "chat_in_flight_requests", entry="rest") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metric(scrape(base), "chat_in_flight_requests", entry="rest") == 0


# --- /v1 (OpenAI) ----------------------------------------------------------------------------------


@pytest.fixture
def client(base: str) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=base + "v1", api_key="unused", max_retries=0, timeout=120)
    yield c
    c.close()


def test_openai_client_gets_the_engine_reply(client: openai.OpenAI, engine: ChatEngine) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
    completion = client.chat.completions.create(
        model="local", messages=messages, temperature=0, max_tokens=16
    )
    expected = engine.reply(messages, GenerationParams(**greedy(16)))
    assert completion.choices[0].message.content == expected.text
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens == expected.stats.completion_tokens
    assert completion.model == expected.stats.model


def test_openai_client_streams(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="anything",
        messages=[{"role": "user", "content": "Write a line about rivers."}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_filtered_request_finishes_with_content_filter(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": f"Explain {BLOCKED_WORD}."}]
    completion = client.chat.completions.create(model="local", messages=messages)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == "Sorry, I can't help with that request."
    stream = list(client.chat.completions.create(model="local", messages=messages, stream=True))
    assert stream[-1].choices[0].finish_reason == "content_filter"


def test_openai_bad_request_raises_a_clear_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "hi"}], temperature=5
        )
    assert "temperature must be between 0 and 2" in str(info.value)
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        client.chat.completions.create(model="local", messages=[{"role": "user", "content": "hi"}], n=2)


def test_openai_models_lists_the_backends(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["local"]


# --- /ws -------------------------------------------------------------------------------------------


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "ws"


def ws_reply(ws, user_input: str, **context) -> tuple[list[dict], dict]:
    """Send one message; return (events before the end, the final done/error event)."""
    ws.send(json.dumps({"user_input": user_input, "context": context}))
    events = []
    while True:
        event = json.loads(ws.recv(timeout=120))
        if event["type"] in ("done", "error"):
            return events, event
        events.append(event)


def test_websocket_conversation_keeps_history(base: str, engine: ChatEngine) -> None:
    params = GenerationParams(**greedy(20))
    with connect(ws_url(base)) as ws:
        events, first = ws_reply(ws, "My name is Ada. Say hello.", **greedy(20))
        assert first["type"] == "done"
        assert "".join(e["text"] for e in events if e["type"] == "delta") == first["reply"]
        _, second = ws_reply(ws, "What is my name?")  # context values stick
    history = [
        {"role": "user", "content": "My name is Ada. Say hello."},
        {"role": "assistant", "content": first["reply"]},
        {"role": "user", "content": "What is my name?"},
    ]
    assert second["reply"] == engine.reply(history, params).text
    assert second["prompt_tokens"] > first["prompt_tokens"]


def test_websocket_refuses_filtered_messages_and_stays_open(base: str, engine: ChatEngine) -> None:
    with connect(ws_url(base)) as ws:
        events, refused = ws_reply(ws, f"Tell me about {BLOCKED_WORD}.")
        assert refused["type"] == "done" and refused["blocked"] is True
        assert refused["reply"] == "Sorry, I can't help with that request."
        _, answer = ws_reply(ws, "Say ok.", **greedy(8))
    # The refused exchange is not part of the history.
    expected = engine.reply([{"role": "user", "content": "Say ok."}], GenerationParams(**greedy(8)))
    assert answer["reply"] == expected.text


def test_websocket_bad_frames_get_errors_not_a_disconnect(base: str) -> None:
    with connect(ws_url(base), max_size=None) as ws:
        for frame, kind in [
            ("{not json", "invalid_json"),
            ("[1, 2]", "invalid_json"),
            (json.dumps({"user_input": 42}), "invalid_request"),
            (json.dumps({"user_input": "hi", "context": {"top_p": "high"}}), "invalid_request"),
            (json.dumps({"user_input": "hi", "context": {"history": []}}), "invalid_request"),
            (json.dumps({"type": "dance"}), "invalid_request"),
            (json.dumps({"user_input": "x" * (MAX_BODY + 1)}), "payload_too_large"),
        ]:
            ws.send(frame)
            event = json.loads(ws.recv(timeout=30))
            assert event["type"] == "error", frame
            assert event["error"]["type"] == kind
            assert event["status"] in (400, 413)
        _, done = ws_reply(ws, "Say ok.", max_new_tokens=4)
        assert done["type"] == "done"


def test_websocket_cancel_and_reset(base: str, local_backend, engine: ChatEngine) -> None:
    with connect(ws_url(base)) as ws:
        ws.send(json.dumps({"user_input": LONG_TASK, "context": HOLD_THE_MODEL}))
        deltas = 0
        while deltas < 3:
            deltas += json.loads(ws.recv(timeout=60))["type"] == "delta"
        ws.send(json.dumps({"type": "cancel"}))
        while (event := json.loads(ws.recv(timeout=30)))["type"] != "done":
            pass
        assert event["finish_reason"] == "cancelled"
        ws.send(json.dumps({"type": "reset"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "reset"}
        _, answer = ws_reply(ws, "Say ok.", **greedy(8))
    expected = engine.reply([{"role": "user", "content": "Say ok."}], GenerationParams(**greedy(8)))
    assert answer["reply"] == expected.text


def test_websocket_disconnect_frees_the_model(base: str, local_backend) -> None:
    with connect(ws_url(base)) as ws:
        ws.send(json.dumps({"user_input": LONG_TASK, "context": HOLD_THE_MODEL}))
        deltas = 0
        while deltas < 3:
            deltas += json.loads(ws.recv(timeout=60))["type"] == "delta"
        assert local_backend.queue_depth == 1
    wait_idle(local_backend)
    assert local_backend.queue_depth == 0


# --- health, metrics, logs ---------------------------------------------------------------------------


def test_health_and_readiness(base: str) -> None:
    assert httpx.get(base + "healthz").json() == {"status": "ok"}
    ready = httpx.get(base + "readyz")
    assert ready.status_code == 200
    assert ready.json()["backends"]["local"]["ready"] is True


def test_metrics_change_as_requests_are_made(base: str) -> None:
    before = scrape(base)
    request = {"user_input": "What is 2 + 2?", "context": greedy(32)}  # ends with "stop": cached
    chat(base, request)
    chat(base, request)  # a cache hit
    chat(base, {"user_input": f"{BLOCKED_WORD}?"})
    chat(base, {"user_input": "word " * 3000, "context": {"context_length": 1024}})
    httpx.post(base + "api/chat", content=b"{oops", headers={"Content-Type": "application/json"}, timeout=10)
    after = scrape(base)

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert after.startswith("# HELP")
    assert grew("chat_requests_total", entry="rest", backend="local", outcome="ok") == 2
    assert grew("chat_requests_total", entry="rest", outcome="blocked") == 1
    assert grew("chat_errors_total", entry="rest", kind="context_overflow") == 1
    assert grew("chat_rejected_requests_total", entry="rest", reason="invalid_json") == 1
    assert grew("chat_cache_hits_total") == 1
    assert grew("chat_cache_misses_total") == 1
    assert grew("chat_filter_blocks_total", stage="input") == 1
    assert grew("chat_completion_tokens_total", entry="rest", backend="local") > 0
    assert grew("chat_prompt_tokens_total", entry="rest", backend="local") > 0
    assert grew("chat_time_to_first_token_seconds_count", entry="rest", backend="local") == 2
    assert grew("chat_request_duration_seconds_count", entry="rest", backend="local") == 4
    for name in ("chat_retries_total", "chat_fallbacks_total", "chat_queue_depth", "chat_in_flight_requests"):
        assert f"\n{name}" in after or after.startswith(name), name


def test_gradio_requests_count_in_the_same_metrics(base: str) -> None:
    from gradio_client import Client

    before = metric(scrape(base), "chat_requests_total", entry="gradio")
    c = Client(base, verbose=False)
    try:
        assert c.predict(message="Say ok.", max_new_tokens=4, api_name="/chat")
    finally:
        c.close()
    assert metric(scrape(base), "chat_requests_total", entry="gradio") == before + 1


def test_each_app_has_its_own_registry(local_backend) -> None:
    with serve(service_engine(local_backend), full=False) as other:
        text = scrape(other)
    assert metric(text, "chat_requests_total") == 0
    assert "chat_queue_depth" in text


def test_one_json_log_line_per_request_without_user_text(base: str, access_lines: list[dict]) -> None:
    secret_question = "What colour is the sky on Mars?"
    chat(base, {"user_input": secret_question, "context": greedy(6)}, headers={"X-Request-ID": "log-1"})
    with connect(ws_url(base)) as ws:
        ws_reply(ws, "Say ok.", max_new_tokens=4)
    bad = {"X-Request-ID": "log-2", "Content-Type": "application/json"}
    httpx.post(base + "v1/chat/completions", content=b"[", timeout=10, headers=bad)
    time.sleep(0.2)
    by_id = {line["request_id"]: line for line in access_lines}
    rest = by_id["log-1"]
    assert rest["entry"] == "rest" and rest["status"] == 200 and rest["outcome"] == "ok"
    assert rest["backend"] == "local" and rest["total_ms"] >= rest["ttft_ms"] > 0
    assert rest["event"] == "request" and rest["ts"].endswith("Z")
    assert by_id["log-2"]["entry"] == "openai" and by_id["log-2"]["status"] == 400
    assert any(line["entry"] == "ws" and line["outcome"] == "ok" for line in access_lines)
    assert secret_question not in json.dumps(access_lines)


def test_user_text_is_logged_only_when_enabled(local_backend, access_lines: list[dict]) -> None:
    with serve(service_engine(local_backend), full=False, log_format="json", log_user_text=True) as url:
        chat(url, {"user_input": "Say yes.", "context": greedy(4)}, headers={"X-Request-ID": "log-3"})
    line = next(line for line in access_lines if line["request_id"] == "log-3")
    assert line["user_input"] == "Say yes."
    assert "reply" in line


def test_concurrent_rest_and_ws_share_one_model(base: str, local_backend) -> None:
    """Entry points queue for the same model: both finish, one after the other."""
    results: dict[str, str] = {}

    def rest() -> None:
        results["rest"] = chat(base, {"user_input": "Name two animals.", "context": greedy(16)}).json()[
            "reply"
        ]

    thread = threading.Thread(target=rest)
    thread.start()
    with connect(ws_url(base)) as ws:
        events, done = ws_reply(ws, "Name two birds.", **greedy(16))
    thread.join(120)
    assert done["type"] == "done" and results["rest"]


def test_openapi_page_documents_the_http_routes(base: str) -> None:
    spec = httpx.get(base + "api/openapi.json").json()
    assert {"/api/chat", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )
    body = spec["paths"]["/api/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["user_input"]
    assert httpx.get(base + "api/docs").status_code == 200
