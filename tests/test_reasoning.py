"""Reasoning models: thinking is shown apart from the reply and is never the reply.

SmolLM2 does not think, so the model here is scripted (``Thinker``, a fake backend that streams
given chunks and records the messages it was sent). The cloud case runs the real
``OpenAICompatBackend`` against a DeepSeek-style server on loopback (a stand-in for the internet:
FastAPI on uvicorn, streaming ``reasoning_content`` deltas), and the service encoders run on the
real app over HTTP and WebSocket.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from guard_fakes import ScriptedBackend
from service_support import serve, sse_events
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from support import frames, free_port
from websockets.sync.client import connect

from chat import ChatEngine, Done, GenerationParams, Message, TextDelta
from chat.backends.base import Chunk, Finish
from chat.backends.openai_compat import OpenAICompatBackend
from chat.engine.cache import ReplyCache
from chat.engine.reasoning import THINKING_ID, ThinkSplitter, split, without_thinking
from chat.guards import ContentGuard
from chat.messages import ThinkingDelta
from chat.reply.pipeline import Pipeline
from chat.reply.transcript import to_json, to_markdown
from chat.reply.turn import Refusal, ReplyRequest
from chat.server import Server
from chat.ui import ChatHandlers, history_to_messages

PARAMS = GenerationParams(temperature=0, max_new_tokens=64)
UI_DEFAULTS = ("", 0.7, 2048, 64, 0.95)  # system prompt, temperature, context, max new tokens, top-p


def parts_of(chunks: Sequence[str]) -> tuple[str, str, list[Any]]:
    """Feed ``chunks`` through one splitter: (reply, thinking) as settled at the end, and the parts."""
    splitter = ThinkSplitter()
    parts = [p for chunk in chunks for p in splitter.feed(chunk)] + splitter.flush()
    reply = "".join(p.text for p in parts if isinstance(p, TextDelta))
    thinking = "".join(p.text for p in parts if isinstance(p, ThinkingDelta))
    return *splitter.settle(reply, thinking), parts


def every_cut(text: str) -> Iterator[list[str]]:
    """Two chunks at every position, and one character at a time."""
    yield from ([text[:i], text[i:]] for i in range(1, len(text)))
    yield list(text)


# --- the splitter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reply", "thinking"),
    [
        ("<think>The user greets me.</think>\n\nHello!", "Hello!", "The user greets me."),
        ("<think>\n用户在问候。\n</think>\n\n你好！", "你好！", "用户在问候。"),
        ("Sure. <think>check the date</think>It is Monday.", "Sure. It is Monday.", "check the date"),
    ],
)
def test_tags_cut_anywhere_across_deltas_split_the_same(text: str, reply: str, thinking: str) -> None:
    for chunks in every_cut(text):
        got_reply, got_thinking, _ = parts_of(chunks)
        assert (got_reply, got_thinking) == (reply, thinking), chunks


def test_a_block_without_closing_tag_is_thinking_to_the_end() -> None:
    assert parts_of(["<think>Let me see", ", the answer is"])[:2] == ("", "Let me see, the answer is")


def test_several_blocks_make_one_thinking_text_and_one_reply() -> None:
    reply, thinking, _ = parts_of(["<think>first</think>A, ", "<think>second</think>", "B."])
    assert (reply, thinking) == ("A, B.", "first\n\nsecond")


def test_text_that_only_looks_like_a_tag_is_reply_text() -> None:
    assert parts_of(["a <", " b and <th", "ing>, x < y <"])[:2] == ("a < b and <thing>, x < y <", "")


def test_a_block_opened_by_the_chat_template_is_thinking_once_it_closes() -> None:
    # DeepSeek-R1 distills and QwQ: the prompt ends with "<think>", the model only closes it
    reply, thinking, parts = parts_of(["The user greets", " me.</thi", "nk>\n\nHello! <b>", "</think>x"])
    assert (reply, thinking) == ("Hello! <b>x", "The user greets me.")
    assert "".join(p.text for p in parts) == "The user greets me.Hello! <b>x"  # streamed as it came


def test_plain_text_passes_through_as_it_came() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("Hello") == [TextDelta("Hello")]
    assert splitter.feed(" world") == [TextDelta(" world")]
    assert splitter.flush() == []


def test_history_loses_thinking_only_in_assistant_messages() -> None:
    messages = [
        Message("system", "Explain <think> tags if asked."),
        Message("user", "What does <think>x</think> do?"),
        Message("assistant", "<think>The user asks about tags.</think>\n\nIt marks thinking."),
        Message("user", "谢谢"),
    ]
    assert without_thinking(messages) == [
        *messages[:2],
        Message("assistant", "It marks thinking."),
        messages[3],
    ]
    assert split("<think>想一想</think>好的。") == ("好的。", "想一想")


# --- the engine -----------------------------------------------------------------------------------

THOUGHT = "The user wants the capital of France. That is Paris."
ANSWER = "The capital of France is Paris."
CHUNKS = ["<thi", "nk>The user wants the capital", " of France. That is Paris.</th", "ink>\n\n", ANSWER]


class Thinker(ScriptedBackend):
    """``ScriptedBackend`` whose chunks may be ``ThinkingDelta`` too, recording each request's messages."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        super().__init__([])
        self.script = list(chunks)
        self.seen: list[list[Message]] = []

    def stream(self, messages: Sequence[Message], params: GenerationParams, **_: Any) -> Iterator[Chunk]:
        self.calls += 1
        self.seen.append(list(messages))
        yield from self.script
        yield Finish("stop")


def test_the_engine_streams_thinking_apart_and_done_holds_only_the_reply() -> None:
    backend = Thinker(CHUNKS)
    events = list(ChatEngine({"local": backend}).stream([Message("user", "Capital of France?")], PARAMS))
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    shown = "".join(e.text for e in events if isinstance(e, TextDelta))
    done = events[-1]
    assert isinstance(done, Done)
    assert (thinking, shown) == (THOUGHT, ANSWER)
    assert (done.text, done.thinking) == (ANSWER, THOUGHT)
    assert done.stats.completion_tokens == len(CHUNKS)  # no usage from the backend: chunks, thinking too
    assert done.stats.time_to_first_token is not None
    first = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(not isinstance(e, ThinkingDelta) for e in events[first:])  # all thinking before the reply


def test_thinking_is_not_sent_back_and_not_in_the_cache_key_or_entry() -> None:
    backend, cache = Thinker(CHUNKS), ReplyCache()
    engine = ChatEngine({"local": backend}, cache=cache)
    first = [Message("user", "Capital of France?")]
    done = engine.reply(first, PARAMS)
    assert cache.get(cache.key(backend, first, PARAMS)) == ANSWER  # the reply only is cached
    follow_up = [Message("user", "And of Spain?")]
    # a client sends the reply back with its thinking (as some UIs do), then without it
    engine.reply(
        [*first, Message("assistant", f"<think>{THOUGHT}</think>\n\n{done.text}"), *follow_up], PARAMS
    )
    assert backend.seen[-1][1] == Message("assistant", ANSWER)
    assert all("think>" not in m.content and "That is Paris" not in m.content for m in backend.seen[-1])
    again = engine.reply([*first, Message("assistant", ANSWER), *follow_up], PARAMS)
    assert again.stats.from_cache and backend.calls == 2  # the same key: thinking was never in it
    assert (again.text, again.thinking) == (ANSWER, "")  # a cache hit replays the reply, not the thinking


def test_a_reply_whose_block_the_template_opened_ends_with_thinking_apart() -> None:
    backend = Thinker(["The user wants", " the capital of France. That is Paris.</think>", "\n\n", ANSWER])
    events = list(ChatEngine({"local": backend}).stream([Message("user", "Capital of France?")], PARAMS))
    assert isinstance(events[-1], Done)
    assert (events[-1].text, events[-1].thinking) == (ANSWER, THOUGHT)
    handlers = ChatHandlers(ChatEngine({"local": backend}))
    bubbles, _ = list(frames(handlers.ui("Capital?", [], *UI_DEFAULTS)))[-1]
    assert [(b.content, bool(b.metadata)) for b in bubbles] == [(THOUGHT, True), (ANSWER, False)]


def test_the_store_keeps_the_reply_not_the_thinking(tmp_path) -> None:  # noqa: ANN001
    from chat.reply.turn import StoredConversation
    from chat.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    try:
        owner = "anon:reasoner"
        conversation = store.create_conversation(owner)
        engine = ChatEngine({"local": Thinker(CHUNKS)})
        # a client's own history (a new stored conversation) arrives with a thinking block in it
        history = [Message("user", "Hi"), Message("assistant", f"<think>{THOUGHT}</think>Hello.")]
        request = ReplyRequest(
            messages=[*history, Message("user", "Capital of France?")],
            params=PARAMS,
            conversation=StoredConversation(store, owner, conversation.id, new=True),
        )
        steps = list(Pipeline(engine).run(request))
        assert steps[-1].thinking == THOUGHT  # the outcome carries it for the page and the APIs
        kept = [m.content for m in store.get_conversation(owner, conversation.id).messages]
        assert kept == ["Hi", "Hello.", "Capital of France?", ANSWER]
    finally:
        store.close()


def test_a_listed_phrase_in_the_thinking_withholds_the_whole_reply() -> None:
    guard = ContentGuard()
    backend = Thinker(["<think>I should ask them to ", "send me your password", "</think>", ANSWER])
    engine = ChatEngine({"local": backend}, output_guard=guard)
    steps = list(Pipeline(engine).run(ReplyRequest(messages=[Message("user", "Hi")], params=PARAMS)))
    assert isinstance(steps[-1], Refusal) and steps[-1].stage == "output"
    leaked = "".join(s.text for s in steps if isinstance(s, (ThinkingDelta, TextDelta)))
    assert "password" not in leaked and ANSWER not in leaked


# --- a cloud API streaming reasoning_content -----------------------------------------------------


def reasoner_app(seen: list[dict[str, Any]]) -> FastAPI:
    """A DeepSeek-style ``/chat/completions`` (a stand-in for the internet): thinking in
    ``reasoning_content`` deltas (``/reasoning/v1``: in ``reasoning``, as OpenRouter and Ollama
    name it), then the answer; ``/json/v1`` ignores ``stream`` and answers one JSON body."""
    app = FastAPI()

    @app.post("/{mode}/v1/chat/completions")
    async def completions(mode: str, request: Request) -> Response:
        seen.append(await request.json())
        usage = {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52}
        if mode == "json":
            message = {"role": "assistant", "content": "是巴黎。", "reasoning_content": "用户问首都。"}
            return JSONResponse(
                {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}
            )
        field = "reasoning" if mode == "reasoning" else "reasoning_content"
        deltas = [{"role": "assistant", "content": None, field: ""}]
        deltas += [
            {"content": None, field: word} for word in ("The user wants", " the capital", " of France.")
        ]
        deltas += [{"content": word, field: None} for word in ("The capital", " is Paris.")]

        def events() -> Iterator[str]:
            for delta in deltas:
                yield (
                    "data: "
                    + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    + "\n\n"
                )
            yield (
                "data: "
                + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                + "\n\n"
            )
            yield "data: " + json.dumps({"choices": [], "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def reasoner() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    server = Server(reasoner_app(seen), host="127.0.0.1", port=free_port())
    server.start()
    yield server.local_url, seen
    server.stop()


@pytest.mark.parametrize("mode", ["sse", "reasoning"])
def test_a_cloud_reasoning_field_streams_as_thinking_and_never_goes_back(reasoner, mode: str) -> None:
    url, seen = reasoner
    backend = OpenAICompatBackend(url + f"{mode}/v1", "deepseek-reasoner")
    engine = ChatEngine({"cloud": backend})
    try:
        events = list(engine.stream([Message("user", "Capital of France?")], PARAMS))
        done = events[-1]
        assert isinstance(done, Done)
        assert [e.text for e in events if isinstance(e, ThinkingDelta)] != []
        assert (done.text, done.thinking) == (
            "The capital is Paris.",
            "The user wants the capital of France.",
        )
        assert done.stats.completion_tokens == 40  # the provider's count, thinking included
        history = [Message("user", "Capital of France?"), Message("assistant", done.text)]
        engine.reply([*history, Message("user", "And Spain?")], PARAMS)
        sent = seen[-1]["messages"]
        assert sent[1] == {"role": "assistant", "content": "The capital is Paris."}
        assert "The user wants" not in json.dumps(sent)
    finally:
        backend.close()


def test_a_json_body_with_reasoning_content_is_thinking_too(reasoner) -> None:
    url, _ = reasoner
    with OpenAICompatBackend(url + "json/v1", "deepseek-reasoner") as backend:
        done = ChatEngine({"cloud": backend}).reply([Message("user", "法国的首都？")], PARAMS)
    assert (done.text, done.thinking) == ("是巴黎。", "用户问首都。")


# --- the page: a collapsed block, not context, not exported ---------------------------------------


@pytest.mark.parametrize(
    ("message", "title"), [("Capital of France?", "Thinking"), ("法国的首都是哪里？", "思考过程")]
)
def test_the_page_shows_thinking_collapsed_before_the_reply(message: str, title: str) -> None:
    backend = Thinker(CHUNKS)
    handlers = ChatHandlers(ChatEngine({"local": backend}))
    outputs = list(frames(handlers.ui(message, [], *UI_DEFAULTS)))
    bubbles, stats = outputs[-1]
    thinking, reply = bubbles
    assert thinking.metadata == {"title": title, "status": "done", "id": THINKING_ID}
    assert (thinking.content, reply.content) == (THOUGHT, ANSWER) and not reply.metadata
    assert stats.startswith("**scripted**") and f"{len(CHUNKS)} " in stats  # thinking chunks count as tokens
    streaming = [b for b, _ in outputs[:-1]]
    assert any(len(b) == 1 and b[0].metadata for b in streaming)  # the thinking shows before any reply

    history = [
        {"role": "user", "content": message},
        *({"role": b.role, "content": b.content, "metadata": b.metadata} for b in bubbles),
    ]
    assert history_to_messages(history) == [Message("user", message), Message("assistant", ANSWER)]
    list(frames(handlers.ui("And Spain?", history, *UI_DEFAULTS)))
    assert all(THOUGHT not in m.content for m in backend.seen[-1])
    exported = to_markdown(history) + to_json(history)
    assert ANSWER in exported and THOUGHT not in exported and title not in exported


# --- the service: /api/chat, SSE, /ws and /v1 ---------------------------------------------------


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    # no response cache: every request below must reach the model (a cache hit has no thinking)
    with serve(ChatEngine({"scripted": Thinker(CHUNKS)}), full=False) as url:
        yield url


def test_api_chat_json_and_sse_carry_reasoning_apart(service: str) -> None:
    body = httpx.post(service + "api/chat", json={"user_input": "Capital?"}, timeout=30).json()
    assert (body["reply"], body["reasoning"]) == (ANSWER, THOUGHT)
    with httpx.stream(
        "POST", service + "api/chat", json={"user_input": "Capital?", "stream": True}, timeout=30
    ) as r:
        events = list(sse_events(r.iter_lines()))
    thinking = "".join(json.loads(d)["text"] for name, d in events if name == "thinking")
    deltas = "".join(json.loads(d)["text"] for name, d in events if name == "delta")
    done = json.loads(events[-1][1])
    assert (thinking, deltas, done["reply"], done["reasoning"]) == (THOUGHT, ANSWER, ANSWER, THOUGHT)


def test_ws_sends_thinking_frames_and_reasoning_in_done(service: str) -> None:
    with connect(service.replace("http://", "ws://") + "ws") as ws:
        ws.send(json.dumps({"user_input": "Capital?"}))
        frames = []
        while (frame := json.loads(ws.recv(timeout=30)))["type"] not in ("done", "error"):
            frames.append(frame)
    assert "".join(f["text"] for f in frames if f["type"] == "thinking") == THOUGHT
    assert (frame["type"], frame["reply"], frame["reasoning"]) == ("done", ANSWER, THOUGHT)


def test_v1_returns_reasoning_content_as_deepseek_does(service: str) -> None:
    request = {"model": "scripted", "messages": [{"role": "user", "content": "Capital?"}]}
    message = httpx.post(service + "v1/chat/completions", json=request, timeout=30).json()["choices"][0][
        "message"
    ]
    assert message == {"role": "assistant", "content": ANSWER, "reasoning_content": THOUGHT}
    with httpx.stream(
        "POST", service + "v1/chat/completions", json={**request, "stream": True}, timeout=30
    ) as r:
        chunks = [json.loads(d) for _, d in sse_events(r.iter_lines()) if d != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == THOUGHT
    assert "".join(d.get("content") or "" for d in deltas) == ANSWER
    assert not any("reasoning_content" in d and d.get("content") for d in deltas)


def test_a_plain_model_gets_an_empty_reasoning_field() -> None:
    with serve(ChatEngine({"plain": ScriptedBackend(["Hello"])}), full=False) as url:
        body = httpx.post(url + "api/chat", json={"user_input": "Hi"}, timeout=30).json()
        message = httpx.post(
            url + "v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}, timeout=30
        ).json()["choices"][0]["message"]
    assert (body["reply"], body["reasoning"]) == ("Hello", "")
    assert message == {"role": "assistant", "content": "Hello"}  # no reasoning_content key at all
