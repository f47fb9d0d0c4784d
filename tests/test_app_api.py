"""The launched app through its public Gradio API, as a program (or a browser) would use it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from guard_fakes import ScriptedBackend
from support import free_port

from chat import ChatEngine, GenerationParams, Settings
from chat.server import QUEUE_POLL_SECONDS, Server, build_app

# Asked greedy (temperature 0) where a test holds the model: sampled, it may stop at once.
LONG_TASK = "Count from 1 to 600, separated by commas."


@pytest.fixture
def client(app_url: str):
    c = Client(app_url, verbose=False)
    yield c
    c.close()


def wait_until_idle(backend, timeout: float = 15.0) -> float:
    start = time.monotonic()
    while backend.queue_depth and time.monotonic() - start < timeout:
        time.sleep(0.02)
    return time.monotonic() - start


def test_api_is_named_chat_with_named_parameters(client: Client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    params = {p["parameter_name"] for p in api["named_endpoints"]["/chat"]["parameters"]}
    assert {"message", "system_prompt", "temperature", "context_length", "max_new_tokens", "top_p"} <= params


def test_predict_returns_the_reply(client: Client, engine: ChatEngine) -> None:
    question = "What is the capital of France?"
    reply = client.predict(message=question, temperature=0, max_new_tokens=24, api_name="/chat")
    expected = engine.reply(
        [{"role": "user", "content": question}], GenerationParams(temperature=0, max_new_tokens=24)
    )
    assert reply == expected.text


def test_reply_streams_through_the_api(client: Client) -> None:
    job = client.submit(message="Describe a sunny day.", max_new_tokens=48, api_name="/chat")
    outputs = [o for o in job]
    assert len(outputs) >= 3
    assert outputs[-1] == job.result()
    assert all(outputs[-1].startswith(o) for o in outputs)  # cumulative text


def test_history_and_system_prompt_reach_the_model(client: Client, engine: ChatEngine) -> None:
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
    ]
    kwargs = dict(system_prompt="Answer in one short sentence.", temperature=0, max_new_tokens=20)
    reply = client.predict(message="What is my name?", history=history, api_name="/chat", **kwargs)
    expected = engine.reply(
        [
            {"role": "system", "content": kwargs["system_prompt"]},
            *history,
            {"role": "user", "content": "What is my name?"},
        ],
        GenerationParams(temperature=0, max_new_tokens=20),
    )
    assert reply == expected.text


def test_two_concurrent_chats_get_their_own_replies(app_url: str, engine: ChatEngine) -> None:
    questions = ["Name three colours.", "用中文介绍一下北京。"]
    params = GenerationParams(temperature=0, max_new_tokens=16)
    expected = [engine.reply([{"role": "user", "content": q}], params).text for q in questions]

    def ask(question: str) -> str:
        c = Client(app_url, verbose=False)
        try:
            return c.predict(message=question, temperature=0, max_new_tokens=16, api_name="/chat")
        finally:
            c.close()

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(ask, questions))
    assert replies == expected


def test_cancel_frees_the_model(client: Client, app_url: str, local_backend) -> None:
    job = client.submit(message=LONG_TASK, max_new_tokens=1500, temperature=0, api_name="/chat")
    for i, _ in enumerate(job):
        if i == 3:
            break
    assert local_backend.queue_depth == 1
    started = time.monotonic()
    job.cancel()
    freed_after = wait_until_idle(local_backend)
    assert local_backend.queue_depth == 0
    # The next request, another client's, runs at once; the cancelled one would have needed
    # many more seconds. (The same Client's next call once failed on a loaded machine: it joined
    # the client's event stream while the cancel was closing it, and got CancelledError.)
    other = Client(app_url, verbose=False)
    try:
        quick = other.predict(message="Say hi.", max_new_tokens=8, api_name="/chat")
        next_done_after = time.monotonic() - started
        assert quick
        full = time.monotonic()
        other.predict(message=LONG_TASK, max_new_tokens=120, temperature=0, api_name="/chat")
        long_reply_time = time.monotonic() - full
    finally:
        other.close()
    assert freed_after < long_reply_time
    assert next_done_after < long_reply_time


def test_closed_browser_tab_frees_the_model(app_url: str, local_backend) -> None:
    """A browser talks to Gradio's queue over SSE; dropping that connection is a closed tab."""
    config = httpx.get(app_url + "config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
    session = "closed-tab-test"
    joined = httpx.post(
        app_url + "gradio_api/queue/join",
        json={
            "data": [LONG_TASK, None, "", 0, 2048, 1500, 0.95, ""],
            "fn_index": fn_index,
            "session_hash": session,
        },
    )
    assert joined.status_code == 200
    with httpx.stream("GET", app_url + f"gradio_api/queue/data?session_hash={session}", timeout=30) as stream:
        generating = 0
        for line in stream.iter_lines():
            generating += "process_generating" in line
            if generating >= 5:
                break
    assert local_backend.queue_depth == 1
    wait_until_idle(local_backend)
    assert local_backend.queue_depth == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"temperature": 7}, "temperature must be between 0 and 2"),
        ({"top_p": -1}, "top_p must be between 0 and 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be between"),
        ({"context_length": "long"}, "context_length must be a number"),
        ({"history": "not a list"}, "history must be a list"),
        ({"history": [{"role": "robot", "content": "x"}]}, "history role must be user or assistant"),
        ({"message": ""}, "Please type a message"),
        (
            {"message": "word " * 3000, "max_new_tokens": 64, "context_length": 1024},
            "too long for the context window",
        ),
    ],
)
def test_bad_api_calls_get_clear_errors_and_app_keeps_serving(
    client: Client, kwargs: dict, fragment: str
) -> None:
    kwargs = {"message": "hello", **kwargs}
    with pytest.raises(AppError) as info:
        client.predict(api_name="/chat", **kwargs)
    assert fragment in str(info.value)
    assert "Traceback" not in str(info.value)
    assert client.predict(message="Say ok.", max_new_tokens=4, api_name="/chat")


def test_chinese_errors_are_in_chinese(client: Client) -> None:
    with pytest.raises(AppError) as info:
        client.predict(message="你好 " * 3000, max_new_tokens=64, context_length=1024, api_name="/chat")
    assert "消息太长" in str(info.value)


def test_stopping_the_server_does_not_wait_for_idle_api_sessions() -> None:
    """A connected gradio_client holds Gradio's heartbeat stream open, which never ends on its
    own: stopping (a deploy's restart, Ctrl-C) ends it instead of waiting out the grace period
    and cutting it."""
    settings = Settings(n_ctx=2048, port=free_port())
    server = Server(
        build_app(ChatEngine({"local": ScriptedBackend(["Hello."])}), settings), "127.0.0.1", settings.port
    )
    server.start()
    client = Client(server.local_url, verbose=False)
    try:
        assert client.predict(message="Hi", api_name="/chat") == "Hello."
        assert client.heartbeat.is_alive()  # the stream this is about is open
        assert server.stop(), "the server had to cut open connections"
    finally:
        client.close()


def test_an_idle_apps_queue_polls_every_10_ms_not_every_millisecond() -> None:
    """Gradio 5 polls its queue every 1 ms (8.6% of a core with nobody connected); the app sets a
    private attribute for it, which a Gradio upgrade could rename without a word."""
    app = build_app(ChatEngine({"local": ScriptedBackend(["Hello."])}), Settings(n_ctx=2048))
    [blocks] = [
        route.app.get_blocks() for route in app.routes if hasattr(getattr(route, "app", None), "get_blocks")
    ]
    assert blocks._queue.sleep_when_free == QUEUE_POLL_SECONDS == 0.01
