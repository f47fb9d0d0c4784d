"""The UI's chat handler: Gradio shapes in, bubbles and stats out, errors as readable bubbles."""

from __future__ import annotations

import threading
import time

import gradio as gr
import pytest
from guard_fakes import ScriptedBackend, SpyBackend
from support import frames

from chat import ChatEngine, GenerationParams, InvalidRequest, Message, TextDelta
from chat.i18n import t
from chat.ui import ChatHandlers, format_stats, history_to_messages
from chat.ui.handlers import FRAME_SECONDS, FRAME_SECONDS_MAX, build_request, frame_seconds

DEFAULTS = ("", 0.7, 2048, 32, 0.95)  # system prompt, temperature, context, max new tokens, top-p


def run_ui(engine: ChatEngine, message: str, history=None, *args):  # noqa: ANN001, ANN201
    return list(frames(ChatHandlers(engine).ui(message, history or [], *(args or DEFAULTS))))


def test_ui_streams_bubbles_and_ends_with_stats(engine: ChatEngine) -> None:
    outputs = run_ui(engine, "Tell me about tea.")
    assert len(outputs) >= 3
    bubbles, stats = outputs[-1]
    assert bubbles[-1].content.strip()
    assert "**local**" in stats and "tokens" in stats and "tokens a second" in stats
    assert t("stats.finish_length", "en") in stats
    assert all(o[1] == "" for o in outputs[:-1])  # stats appear when the reply is done


def test_a_reply_faster_than_the_eye_reaches_the_page_in_few_frames_and_whole() -> None:
    """200 chunks at once: a frame each would make the browser re-render the reply 200 times."""
    chunks = [f"w{i} " for i in range(200)]
    outputs = run_ui(ChatEngine({"local": ScriptedBackend(chunks)}), "Count.")
    assert len(outputs) < 20, f"{len(outputs)} frames for one reply"
    bubbles, stats = outputs[-1]
    assert bubbles[-1].content == "".join(chunks) and stats


class PacedBackend(ScriptedBackend):
    """A model's pace: a chunk every 10 ms."""

    def stream(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        for chunk in super().stream(*args, **kwargs):
            time.sleep(0.01)
            yield chunk


def test_the_longer_the_conversation_the_fewer_frames_of_a_reply() -> None:
    """Each frame costs the page more as the chat grows (bench/bench_stream_frames.py): after 30
    turns of 1,000 characters the same streamed reply reaches the page in fewer frames, and whole."""
    long_chat: list[dict[str, str]] = []
    for n in range(30):
        long_chat += [
            {"role": "user", "content": f"Question {n}?"},
            {"role": "assistant", "content": "x" * 1000},
        ]
    assert frame_seconds(build_request("Hi", [], "")) == pytest.approx(FRAME_SECONDS, rel=0.01)
    assert frame_seconds(build_request("Hi", long_chat, "")) >= 4 * FRAME_SECONDS
    assert frame_seconds(build_request("Hi", long_chat * 10, "")) == FRAME_SECONDS_MAX

    chunks = [f"w{i} " for i in range(80)]  # 0.8 s
    engine = ChatEngine({"local": PacedBackend(chunks)})
    settings = ("", 0.7, 32_768, 100, 0.95)
    new = run_ui(engine, "Count.", [], *settings)
    long = run_ui(engine, "Count.", long_chat, *settings)
    assert 2 * len(long) < len(new), (len(long), len(new))
    assert new[-1][0][-1].content == long[-1][0][-1].content == "".join(chunks)


def test_gradio_history_shapes_are_understood() -> None:
    ui_history = [
        {"role": "user", "metadata": None, "content": [{"type": "text", "text": "Hi"}], "options": None},
        {"role": "assistant", "metadata": {"title": "2 earlier messages were left out"}, "content": ""},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
    ]
    api_history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    expected = [Message("user", "Hi"), Message("assistant", "Hello!")]
    assert history_to_messages(ui_history) == expected
    assert history_to_messages(api_history) == expected


def test_unanswered_user_messages_are_not_context() -> None:
    history = [
        {"role": "user", "content": "password: hunter2"},
        {"role": "assistant", "metadata": {"title": "⚠️ refused"}, "content": ""},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "stopped while waiting"},
    ]
    assert history_to_messages(history) == [Message("user", "Hi"), Message("assistant", "Hello!")]


def test_a_refused_message_does_not_block_the_rest_of_the_conversation(local_backend) -> None:
    from chat import Settings
    from chat.guards import build_guard

    guard = build_guard(Settings())
    handlers = ChatHandlers(ChatEngine({"local": local_backend}, input_guard=guard, output_guard=guard))
    refused, _ = list(frames(handlers.ui("password: hunter2", [], *DEFAULTS)))[-1]
    assert refused[-1].metadata["title"].startswith("⚠️")
    history = [{"role": "user", "content": "password: hunter2"}, *[b.__dict__ for b in refused]]
    bubbles, stats = list(frames(handlers.ui("What is the capital of France?", history, *DEFAULTS)))[-1]
    assert not (bubbles[-1].metadata or {}).get("title")
    assert bubbles[-1].content and "**local**" in stats


def test_history_with_unknown_roles_is_rejected() -> None:
    with pytest.raises(InvalidRequest):
        history_to_messages([{"role": "system", "content": "sneaky"}])


def test_trimmed_history_is_said_once_under_the_chat_not_in_a_bubble(local_backend) -> None:
    # the trimming is the point, not the reply: scripted over the real tokenizer (no prompt is evaluated)
    engine = ChatEngine({"local": SpyBackend(local_backend, reply=["Coffee ", "came later."])})
    history = []
    for i in range(30):
        history += [
            {"role": "user", "content": f"Question {i} about the history of tea."},
            {"role": "assistant", "content": "Tea has a long and fascinating history. " * 4},
        ]
    bubbles, stats = run_ui(engine, "And coffee?", history, "", 0.7, 512, 32, 0.95)[-1]
    assert [b.content for b in bubbles] == ["Coffee came later."]  # no notice bubble beside it
    line, said = stats.split("\n\n")
    assert "**local**" in line and "old messages left out" not in line  # said once, below
    assert said.startswith("The model sees only the last ") and said.endswith(
        "do not fit the context length."
    )


def test_errors_become_a_bubble_in_the_users_language(engine: ChatEngine) -> None:
    bubbles, stats = run_ui(engine, "很长的消息" * 800, [], "", 0.7, 512, 64, 0.95)[-1]
    assert bubbles[-1].metadata["title"].startswith("⚠️ 消息太长")
    assert stats == ""
    bubbles, _ = run_ui(engine, "hello", [], "", 9.0, 512, 64, 0.95)[-1]
    assert "temperature must be between 0 and 2" in bubbles[-1].metadata["title"]


def test_waiting_users_see_their_queue_position(engine: ChatEngine, local_backend) -> None:
    holders = [  # one long reply per slot of the model
        engine.stream(
            [{"role": "user", "content": f"Write a long, detailed essay about the history of {place}."}],
            GenerationParams(temperature=0.5, seed=1, max_new_tokens=1000),  # not greedy: batched
        )
        for place in ("Rome", "Egypt", "China", "Greece", "Persia", "Japan", "Mali", "Peru")[
            : local_backend.parallel
        ]
    ]
    for holder in holders:
        next(e for e in holder if isinstance(e, TextDelta))  # every slot is now busy
    seen: list[str] = []

    def second() -> None:
        for bubbles, _ in frames(ChatHandlers(engine).ui("Hi", [], *DEFAULTS)):
            seen.append((bubbles[-1].metadata or {}).get("title") or bubbles[-1].content)

    worker = threading.Thread(target=second)
    worker.start()
    try:
        for _ in range(3):  # let the waiting request poll a few times
            worker.join(0.5)
        assert any("position 1" in text for text in seen)
    finally:
        for holder in holders:
            holder.close()
        worker.join(60)
    assert not worker.is_alive()
    assert "position 1" not in seen[-1]  # the real reply replaced the waiting line


def test_stats_line_mentions_cache_fallback_and_retries() -> None:
    from chat import Stats

    line = format_stats(Stats(backend="cloud", model="gpt", from_cache=True, fallback=True, retries=2))
    assert t("stats.from_cache", "en") in line and t("stats.fallback", "en") in line and "2 retries" in line


def test_stats_line_speaks_plain_words_in_the_pages_language() -> None:
    """No jargon ("prompt 0 cached + 61 evaluated", "finish: length") and no English on a
    Chinese page."""
    from chat import Stats

    stats = Stats(
        backend="local",
        model="m",
        completion_tokens=9,
        time_to_first_token=0.12,
        tokens_per_second=40.0,
        cached_prompt_tokens=480,
        evaluated_prompt_tokens=22,
        finish_reason="length",
    )
    assert (
        format_stats(stats)
        == "**local** · `m` · 9 tokens · first word after 120 ms · 40 tokens a second · stopped at the length limit"
    )
    zh = format_stats(stats, "zh")
    assert zh == "**local** · `m` · 9 个 token · 120 毫秒后开始回答 · 每秒 40 个 token · 已达到长度上限"
    assert "length" not in zh and "cached" not in format_stats(stats)
    assert "1.5 s" in format_stats(Stats(backend="local", model="m", time_to_first_token=1.5))


def test_the_ui_renders(engine: ChatEngine) -> None:
    from chat.reply.personas import load_personas
    from chat.ui import build_ui

    personas = load_personas()
    assert {
        "General assistant (English)",
        "通用助手（中文）",
        "Shop customer service (English)",
        "商店客服（中文）",
        "Tutor (English)",
        "学习辅导老师（中文）",
    } <= set(personas)
    demo = build_ui(engine, personas=personas, max_context=2048)
    assert isinstance(demo, gr.Blocks)
    config = demo.get_config_file()
    apis = {d.get("api_name") for d in config["dependencies"]}
    assert "chat" in apis


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ("password: hunter2", "password"),
        ("我的密码是 123456", "密码"),
        ("how do I make a bomb", "can't help"),
        ("x" * 5000, "too long"),
    ],
)
def test_validator_refuses_before_the_message_enters_the_chat(
    local_backend, message: str, fragment: str
) -> None:
    from chat import Settings
    from chat.guards import build_guard

    guard = build_guard(Settings())
    engine = ChatEngine({"local": local_backend}, input_guard=guard, output_guard=guard)
    result = ChatHandlers(engine).validate(message)
    assert result["is_valid"] is False and fragment in result["message"]
    assert "hunter2" not in result["message"] and "123456" not in result["message"]
    assert engine.counters["blocked_input"] == (0 if len(message) > 2000 else 1)
    assert ChatHandlers(engine).validate("What is a good password policy?")["is_valid"] is True


def test_ui_passes_backend_session_key_and_cache_choice_to_the_engine(engine: ChatEngine) -> None:
    """The per-session API key goes to the engine for this request only, and is never shown."""
    seen: list[dict] = []
    real_stream = engine.stream

    def spy(messages, params, **options):  # noqa: ANN001, ANN202
        seen.append(options)
        return real_stream(messages, params, **{k: v for k, v in options.items() if k != "api_key"})

    engine.stream = spy
    try:
        outputs = list(
            frames(
                ChatHandlers(engine).ui(
                    "Hi", [], "", 0.7, 2048, 8, 0.95, "local", "  sk-session-canary  ", False
                )
            )
        )
    finally:
        del engine.stream
    assert seen[0]["backend"] == "local" and seen[0]["api_key"] == "sk-session-canary"
    assert seen[0]["use_cache"] is False
    assert "sk-session-canary" not in repr(outputs)


def test_an_unexpected_failure_is_a_generic_message_not_internals(engine: ChatEngine, caplog) -> None:  # noqa: ANN001
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("internal detail /srv/secret/path")

    engine.stream = broken
    try:
        bubbles, _ = list(frames(ChatHandlers(engine).ui("你好", [], *DEFAULTS)))[-1]
        with pytest.raises(gr.Error) as info:
            list(frames(ChatHandlers(engine).api("hello")))
    finally:
        del engine.stream
    assert bubbles[-1].metadata["title"] == "⚠️ 服务器出现问题，请重试。"
    assert "secret" not in str(info.value) and "Something went wrong" in str(info.value)
    assert "internal detail" in caplog.text  # the operator still sees what happened


def test_a_chinese_page_speaks_chinese_around_an_english_message() -> None:
    """The queue notice, the stats line and the marks follow the browser's language too: on a
    Chinese page an English message still gets Chinese words around its reply."""
    from types import SimpleNamespace

    from chat.ui.handlers import page_language

    zh_page = SimpleNamespace(headers={"accept-language": "zh-CN,zh;q=0.9"}, session_hash="zh-page")
    en_page = SimpleNamespace(headers={"accept-language": "en-US"}, session_hash="en-page")
    assert page_language("Hello", zh_page) == "zh" and page_language("你好", en_page) == "zh"
    assert page_language("Hello", en_page) == "en" and page_language("Hello", None) == "en"
    handlers = ChatHandlers(ChatEngine({"local": ScriptedBackend(["one ", "two"])}))
    *_, (bubbles, stats) = frames(handlers.ui("Hello", [], *DEFAULTS, request=zh_page))
    assert bubbles[-1].content == "one two" and t("stats.tokens", "zh", n=2) in stats
