"""The cloud backend against a real OpenAI-compatible server: ``llama_cpp.server`` on loopback.

The server runs the embedded SmolLM2 in its own process; the chat goes through the engine and
through the launched Gradio app, exactly as with a hosted API.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Iterator

import pytest
from llama_server import llama_cpp_server
from support import free_port

from chat import (
    AuthFailed,
    ChatEngine,
    Done,
    GenerationParams,
    Notice,
    RetryPolicy,
    Settings,
    TextDelta,
    Unavailable,
)
from chat.backends.openai_compat import OpenAICompatBackend, Timeouts
from chat.factory import build_engine

pytestmark = pytest.mark.slow

MODEL = "smol"
KEY = "sk-REAL-SERVER-canary-7f3a9c"
QUESTION = [{"role": "user", "content": "Write two sentences about the sea."}]
TIMEOUTS = Timeouts(connect=5, read=60, total=120)
AUTH = {"Authorization": f"Bearer {KEY}"}


def cloud(base: str, **kw) -> OpenAICompatBackend:  # noqa: ANN003
    return OpenAICompatBackend(base, MODEL, api_key=KEY, timeouts=TIMEOUTS, **kw)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """``python -m llama_cpp.server`` with the embedded GGUF; yields its ``/v1`` base URL."""
    with llama_cpp_server(MODEL, KEY, "--interrupt_requests", "false", "--n_ctx", "2048") as base:
        yield base


@pytest.fixture
def cloud_engine(llama_server: str) -> ChatEngine:
    return ChatEngine({"cloud": cloud(llama_server)})


def test_reply_streams_from_the_real_server(cloud_engine: ChatEngine) -> None:
    events = list(cloud_engine.stream(QUESTION, GenerationParams(max_new_tokens=48, temperature=0.7)))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, Done)
    assert len(deltas) >= 5 and "".join(d.text for d in deltas) == done.text and done.text.strip()
    stats = done.stats
    assert (stats.backend, stats.model) == ("cloud", MODEL)
    assert stats.finish_reason in ("stop", "length") and stats.retries == 0 and not stats.fallback
    assert stats.time_to_first_token is not None and 0 < stats.time_to_first_token <= stats.total_time
    assert 0 < stats.completion_tokens <= 49


def test_system_prompt_and_history_reach_the_server(cloud_engine: ChatEngine) -> None:
    messages = [
        {"role": "system", "content": "You always answer with the single word: banana."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
        {"role": "user", "content": "What is my name?"},
    ]
    done = cloud_engine.reply(messages, GenerationParams(max_new_tokens=24, temperature=0))
    assert done.text.strip()
    assert done.stats.prompt_tokens > 20  # the estimate covered all four messages


def test_json_mode_passes_through_to_the_server_and_comes_back_as_json(cloud_engine: ChatEngine) -> None:
    """llama_cpp.server constrains its sampling with a JSON grammar when asked (issue 9, point 5)."""
    from chat.backends.local.grammars import parse_response_format

    ask = [{"role": "user", "content": 'Reply with a JSON object: {"answer": "yes"} if the sky is blue.'}]
    params = GenerationParams(
        max_new_tokens=160, temperature=0, response_format=parse_response_format({"type": "json_object"})
    )
    done = cloud_engine.reply(ask, params)
    assert done.stats.finish_reason == "stop"  # the grammar closed the object before the limit
    assert isinstance(json.loads(done.text), dict)


def test_stop_frees_the_server_for_the_next_request(cloud_engine: ChatEngine) -> None:
    long = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
    events = cloud_engine.stream(long, GenerationParams(max_new_tokens=1500, temperature=0))
    deltas = 0
    for event in events:
        deltas += isinstance(event, TextDelta)
        if deltas == 3:
            break
    events.close()  # the HTTP stream closes; llama_cpp.server sees the disconnect and stops
    start = time.monotonic()
    done = cloud_engine.reply(QUESTION, GenerationParams(max_new_tokens=8, temperature=0))
    waited = time.monotonic() - start
    assert done.text.strip()
    # 1500 tokens would take tens of seconds at this model's speed on 2 cores.
    assert waited < 10, f"the next request waited {waited:.1f} s: the stopped stream kept generating"


def test_a_wrong_key_is_refused_with_a_clear_message(llama_server: str, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    wrong = "sk-WRONG-canary-key-123"
    engine = ChatEngine({"cloud": OpenAICompatBackend(llama_server, MODEL, api_key=wrong, timeouts=TIMEOUTS)})
    with pytest.raises(AuthFailed) as info:
        engine.reply(QUESTION, GenerationParams(max_new_tokens=8))
    assert "check your API key" in info.value.user_message()
    seen = "\n".join([str(info.value), info.value.user_message(), *traceback.format_exception(info.value)])
    for key in (wrong, KEY):
        assert key not in seen and key not in caplog.text
    # the right key, given for this session only, works on the same engine
    assert engine.reply(QUESTION, GenerationParams(max_new_tokens=8), api_key=KEY).text.strip()


def test_streamed_overflow_is_an_error_that_ends_in_time(llama_server: str) -> None:
    """llama_cpp.server answers a too-long streamed prompt with 200 and an empty stream."""
    engine = ChatEngine(
        {"cloud": cloud(llama_server)}, retry=RetryPolicy(max_attempts=2, base_delay=0.1, total_timeout=60)
    )
    long = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 300}]
    start = time.monotonic()
    with pytest.raises(Unavailable):
        engine.reply(long, GenerationParams(max_new_tokens=32, context_length=16384))
    assert time.monotonic() - start < 60


def test_a_configured_window_trims_history_before_sending(llama_server: str) -> None:
    # A 512-token window trims the same way as a 2,048 one, for a quarter of the prompt to evaluate.
    backend = cloud(llama_server, context_window=512)
    history = []
    for i in range(4):
        history += [
            {
                "role": "user",
                "content": f"Tell me fact {i} about the sea. " + "The sea is big and blue. " * 30,
            },
            {"role": "assistant", "content": "The sea covers most of the planet and is very deep. " * 12},
        ]
    events = list(
        ChatEngine({"cloud": backend}).stream(
            [*history, {"role": "user", "content": "Thanks! Say goodbye."}],
            GenerationParams(max_new_tokens=8, context_length=4096, temperature=0),
        )
    )
    kinds = [e.kind for e in events if isinstance(e, Notice)]
    assert "context_capped" in kinds and "trimmed" in kinds
    assert isinstance(events[-1], Done) and events[-1].text.strip()


def test_factory_chain_falls_back_from_a_dead_cloud_to_the_local_model() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings(
        backend="cloud", fallback=("local",), api_base_url=dead, api_model=MODEL, n_ctx=2048,
        max_attempts=2, total_timeout=60,
    )  # fmt: skip
    engine = build_engine(settings)
    try:
        events = list(engine.stream(QUESTION, GenerationParams(max_new_tokens=16, temperature=0)))
    finally:
        for backend in engine.backends.values():
            backend.close()
    done = events[-1]
    assert isinstance(done, Done) and done.text.strip()
    assert done.stats.backend == "local" and done.stats.fallback
    assert any(isinstance(e, Notice) and e.kind == "fallback" for e in events)


def test_the_launched_app_answers_through_the_cloud_backend(llama_server: str) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client

    from chat.reply.personas import load_personas
    from chat.ui import I18N, build_ui

    engine = ChatEngine({"cloud": cloud(llama_server)})
    demo = build_ui(engine, personas=load_personas(), max_context=2048)
    demo.queue(max_size=16)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, i18n=I18N
    )
    client = Client(url, verbose=False)
    try:
        reply = client.predict(message="What is the capital of France?", max_new_tokens=24, api_name="/chat")
        job = client.submit(message="Describe a sunny day.", max_new_tokens=32, api_name="/chat")
        outputs = list(job)
    finally:
        client.close()
        demo.close()
    assert isinstance(reply, str) and reply.strip()
    assert len(outputs) >= 3 and all(outputs[-1].startswith(o) for o in outputs)  # it streamed
