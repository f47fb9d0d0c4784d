"""The reply pipeline: the engine's events, then exactly one typed outcome, the same on every way in.

The first tests drive ``chat.reply.pipeline.run`` directly with scripted backends (what a real model
cannot do on demand: fail at a given point, ignore a stop). The last ones serve the whole app on
loopback and send one request through every protocol: each only encodes the same outcome.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from guard_fakes import ScriptedBackend
from service_support import BLOCKED_WORD, WordGuard, metric, scrape, serve, sse_events
from websockets.sync.client import connect

from chat import ChatEngine, GenerationParams, InvalidRequest, Message, TextDelta, Unavailable
from chat.backends.base import Backend, Chunk, Finish
from chat.engine.retry import NO_RETRY
from chat.errors import ChatError, OutputBlocked
from chat.reply.pipeline import Pipeline, run
from chat.reply.turn import OUTCOMES, Cancelled, Failure, Refusal, Reply, ReplyRequest, Step

PARAMS = GenerationParams(max_new_tokens=16, context_length=2048)
REFUSAL_EN = "Sorry, I can't help with that request."
REFUSAL_ZH = "抱歉，我无法协助处理这个请求。"


class Endless(Backend):
    """Streams "x" until told to stop: through ``cancel`` (then ``Finish("cancelled")``) or close."""

    name = model = "endless"

    def __init__(self) -> None:
        self.sent = 0
        self.closed = threading.Event()

    def stream(self, messages, params, *, cancel=None, api_key=None) -> Iterator[Chunk]:  # noqa: ANN001
        try:
            while not (cancel is not None and cancel.is_set()):
                self.sent += 1
                yield "x"
                time.sleep(0.001)
            yield Finish("cancelled")
        finally:
            self.closed.set()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return 8


class Broken(Backend):
    """A backend with a bug: it raises something that is not a ``ChatError``."""

    name = model = "broken"

    def stream(self, messages, params, *, cancel=None, api_key=None) -> Iterator[Chunk]:  # noqa: ANN001
        raise KeyError("a bug")
        yield ""  # pragma: no cover

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return 8


class WordFilter:
    """An output guard that stops a reply containing "secret"."""

    def new_filter(self) -> WordFilter:
        return self

    def feed(self, text: str) -> str:
        if "secret" in text:
            raise OutputBlocked("word")
        return text

    def flush(self) -> str:
        return ""


def request(text: str = "Hi", **options: object) -> ReplyRequest:
    return ReplyRequest(messages=[Message("user", text)], params=PARAMS, **options)


def outcome_of(steps: list[Step]) -> Step:
    """The one outcome, checked to be the last step."""
    outcomes = [s for s in steps if isinstance(s, OUTCOMES)]
    assert len(outcomes) == 1 and steps[-1] is outcomes[0], steps
    return outcomes[0]


def test_a_reply_streams_then_ends_with_one_reply() -> None:
    engine = ChatEngine({"scripted": ScriptedBackend(["Hel", "lo"])})
    steps = list(run(engine, request()))
    assert [s.text for s in steps if isinstance(s, TextDelta)] == ["Hel", "lo"]
    reply = outcome_of(steps)
    assert isinstance(reply, Reply)
    assert (reply.text, reply.stats.backend, reply.stats.finish_reason) == ("Hello", "scripted", "stop")


@pytest.mark.parametrize(
    ("text", "refusal"), [(f"Tell me {BLOCKED_WORD}", REFUSAL_EN), (f"说说{BLOCKED_WORD}", REFUSAL_ZH)]
)
def test_an_input_refusal_is_the_outcome_in_the_users_language(text: str, refusal: str) -> None:
    backend = ScriptedBackend(["never"])
    steps = list(run(ChatEngine({"scripted": backend}, input_guard=WordGuard()), request(text)))
    assert steps == [outcome_of(steps)]
    assert isinstance(steps[0], Refusal) and steps[0].stage == "input"
    assert steps[0].text == refusal and steps[0].stats.finish_reason == "blocked"
    assert backend.calls == 0


def test_an_output_refusal_replaces_the_reply() -> None:
    engine = ChatEngine(
        {"scripted": ScriptedBackend(["The ", "secret ", "is 42"])}, output_guard=WordFilter()
    )
    refusal = outcome_of(list(run(engine, request())))
    assert isinstance(refusal, Refusal) and refusal.stage == "output"
    assert refusal.text == "The reply was withheld because it matched the content policy."
    assert [n.kind for n in refusal.notices] == ["blocked"]


def test_a_failure_before_any_text_carries_the_error() -> None:
    engine = ChatEngine({"scripted": ScriptedBackend(["a"], fail_after=0)}, retry=NO_RETRY)
    failure = outcome_of(list(run(engine, request())))
    assert isinstance(failure, Failure) and isinstance(failure.error, Unavailable)
    assert failure.text == ""


def test_a_failure_after_text_keeps_the_text_as_an_interrupted_reply() -> None:
    engine = ChatEngine({"scripted": ScriptedBackend(["a", "b", "c"], fail_after=2)}, retry=NO_RETRY)
    reply = outcome_of(list(run(engine, request())))
    assert isinstance(reply, Reply)
    assert (reply.text, reply.stats.finish_reason) == ("ab", "error")
    assert [n.kind for n in reply.notices] == ["interrupted"]


def test_an_unknown_backend_is_a_failure_not_an_exception() -> None:
    engine = ChatEngine({"scripted": ScriptedBackend(["a"])})
    failure = outcome_of(list(run(engine, request(backend="gpu"))))
    assert isinstance(failure, Failure) and isinstance(failure.error, InvalidRequest)


def test_a_bug_is_logged_in_full_and_the_user_gets_a_sentence(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="chat.reply.pipeline"):
        failure = outcome_of(list(run(ChatEngine({"broken": Broken()}), request())))
    assert isinstance(failure, Failure) and type(failure.error) is ChatError
    assert "Traceback" not in failure.error.user_message("en") and failure.error.user_message("en")
    assert "KeyError: 'a bug'" in caplog.text


def test_cancel_ends_with_cancelled_and_the_text_so_far() -> None:
    backend = Endless()
    cancel = threading.Event()
    steps = []
    for step in run(ChatEngine({"endless": backend}), request(), cancel=cancel):
        steps.append(step)
        if len(steps) == 3:
            cancel.set()
    cancelled = outcome_of(steps)
    assert isinstance(cancelled, Cancelled) and cancelled.stats.finish_reason == "cancelled"
    assert cancelled.text.startswith("xxx")
    assert backend.closed.is_set()


def test_closing_the_steps_stops_the_backend_and_sets_cancel() -> None:
    backend = Endless()
    cancel = threading.Event()
    steps = run(ChatEngine({"endless": backend}), request(), cancel=cancel)
    assert [next(steps), next(steps)] == [TextDelta("x"), TextDelta("x")]
    steps.close()
    assert cancel.is_set() and backend.closed.is_set()
    sent = backend.sent
    time.sleep(0.05)
    assert backend.sent == sent  # nothing more is generated


def test_pipeline_object_runs_the_same_flow() -> None:
    engine = ChatEngine({"scripted": ScriptedBackend(["ok"])})
    pipeline = Pipeline(engine)
    assert pipeline.engine is engine
    reply = outcome_of(list(pipeline.run(request())))
    assert isinstance(reply, Reply) and reply.text == "ok"


# --- every protocol encodes the same outcome ------------------------------------------------------

LONG = "word " * 3000  # over the 2048-token window: a context overflow, found before any text


@pytest.fixture(scope="module")
def app() -> Iterator[str]:
    engine = ChatEngine(
        {"scripted": ScriptedBackend(["Hello", " there"])}, input_guard=WordGuard(), retry=NO_RETRY
    )
    with serve(engine) as url:
        yield url


def via_rest(base: str, text: str) -> dict:
    response = httpx.post(base + "api/chat", json={"user_input": text}, timeout=30)
    body = response.json()
    if response.status_code != 200:
        return {"error": body["error"]["type"], "status": response.status_code}
    return {"text": body["reply"], "blocked": body["blocked"]}


def via_sse(base: str, text: str) -> dict:
    with httpx.stream("POST", base + "api/chat", json={"user_input": text, "stream": True}, timeout=30) as r:
        if r.status_code != 200:
            r.read()
            return {"error": r.json()["error"]["type"], "status": r.status_code}
        name, data = list(sse_events(r.iter_lines()))[-1]
    assert name == "done"
    done = json.loads(data)
    return {"text": done["reply"], "blocked": done["blocked"]}


def via_ws(base: str, text: str) -> dict:
    with connect(base.replace("http://", "ws://") + "ws") as ws:
        ws.send(json.dumps({"user_input": text}))
        while (event := json.loads(ws.recv(timeout=30)))["type"] not in ("done", "error"):
            pass
    if event["type"] == "error":
        return {"error": event["error"]["type"], "status": event["status"]}
    return {"text": event["reply"], "blocked": event["blocked"]}


def via_openai(base: str, text: str) -> dict:
    body = {"model": "scripted", "messages": [{"role": "user", "content": text}]}
    response = httpx.post(base + "v1/chat/completions", json=body, timeout=30)
    if response.status_code != 200:
        return {"error": response.json()["error"]["type"], "status": response.status_code}
    choice = response.json()["choices"][0]
    return {"text": choice["message"]["content"], "blocked": choice["finish_reason"] == "content_filter"}


def via_openai_stream(base: str, text: str) -> dict:
    body = {"model": "scripted", "messages": [{"role": "user", "content": text}], "stream": True}
    with httpx.stream("POST", base + "v1/chat/completions", json=body, timeout=30) as r:
        if r.status_code != 200:
            r.read()
            return {"error": r.json()["error"]["type"], "status": r.status_code}
        datas = [data for _, data in sse_events(r.iter_lines())]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    return {"text": content, "blocked": finishes == ["content_filter"]}


ENTRIES: dict[str, Callable[[str, str], dict]] = {
    "rest": via_rest,
    "sse": via_sse,
    "ws": via_ws,
    "openai": via_openai,
    "openai-stream": via_openai_stream,
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_protocol_encodes_the_same_outcomes(app: str, entry: str) -> None:
    send = ENTRIES[entry]
    assert send(app, "Hi") == {"text": "Hello there", "blocked": False}
    assert send(app, f"Tell me about {BLOCKED_WORD}") == {"text": REFUSAL_EN, "blocked": True}
    assert send(app, f"请介绍{BLOCKED_WORD}") == {"text": REFUSAL_ZH, "blocked": True}
    assert send(app, LONG) == {"error": "context_overflow", "status": 400}


def via_gradio(base: str, text: str) -> tuple[str, object]:
    """Gradio's ``/chat`` API over plain HTTP (``/call``): ``("complete", reply)`` or ``("error", message)``."""
    data = [text, None, "", 0.7, 2048, 16, 0.95, ""]  # message, history, system prompt, sampling, knowledge
    event_id = httpx.post(base + "gradio_api/call/chat", json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", base + f"gradio_api/call/chat/{event_id}", timeout=30) as r:
        name, payload = list(sse_events(r.iter_lines()))[-1]
    body = json.loads(payload)
    return (name, body[0]) if name == "complete" else (name, body["error"])


def test_the_gradio_api_runs_the_same_pipeline(app: str) -> None:
    assert via_gradio(app, "Hi") == ("complete", "Hello there")
    assert via_gradio(app, f"Tell me about {BLOCKED_WORD}") == ("error", REFUSAL_EN)
    name, message = via_gradio(app, LONG)
    assert name == "error" and "too long for the context window" in str(message)


def test_a_json_client_that_leaves_cancels_its_reply_and_frees_the_backend() -> None:
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger, handler, backend = logging.getLogger("chat.access"), Capture(), Endless()
    logger.addHandler(handler)
    try:
        with serve(ChatEngine({"endless": backend}), full=False, log_format="json") as base:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(base + "api/chat", json={"user_input": "Go on forever."}, timeout=0.5)
            assert backend.closed.wait(10)  # the disconnect set cancel: generation stopped
            deadline = time.monotonic() + 10
            while not lines and time.monotonic() < deadline:
                time.sleep(0.02)
            in_flight = metric(scrape(base), "chat_in_flight_requests", entry="rest")
    finally:
        logger.removeHandler(handler)
    line = json.loads(lines[-1])
    assert (line["status"], line["outcome"], line["finish_reason"]) == (499, "cancelled", "cancelled")
    assert in_flight == 0


class CountingGuard(WordGuard):
    """The word guard, remembering each set of messages it judged."""

    def __init__(self) -> None:
        self.judged: list[list[str]] = []

    def check(self, messages: Sequence[Message], *, moderate: bool = True) -> None:
        self.judged.append([m.content for m in messages])
        super().check(messages, moderate=moderate)


@pytest.mark.parametrize("stored", [False, True], ids=["stateless", "stored"])
def test_one_turn_judges_its_message_once_and_detects_its_language_once(
    stored: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import i18n
    from chat.engine import guarded
    from chat.reply import turn
    from chat.reply.turn import StoredConversation
    from chat.store import Store

    detected: list[str] = []

    def detect(text: str) -> i18n.Lang:
        detected.append(text)
        return i18n.detect_language(text)

    monkeypatch.setattr(turn, "detect_language", detect)
    monkeypatch.setattr(guarded, "detect_language", detect)
    guard = CountingGuard()
    engine = ChatEngine({"scripted": ScriptedBackend(["你好", "！"])}, input_guard=guard, retry=NO_RETRY)
    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}") if stored else None
    conversation = None
    if store is not None:
        conversation = StoredConversation(store, "user:ada", store.create_conversation("user:ada").id)
    messages = [Message("system", "Be brief."), Message("user", "你好")]
    request = ReplyRequest(messages=messages, params=PARAMS, conversation=conversation)
    try:
        steps = list(run(engine, request))
    finally:
        if store is not None:
            store.close()
    assert isinstance(steps[-1], Reply) and steps[-1].text == "你好！"
    assert guard.judged == [["Be brief.", "你好"]]  # once, by the pipeline; the engine trusts it
    assert detected == ["你好"] and request.lang == "zh" and detected == ["你好"]
