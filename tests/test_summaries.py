"""Summaries of dropped turns (issue 12, point 6): made by the real SmolLM2 in the background after
a reply whose fitting left turns out, kept with the conversation, sent as a system note after the
system prompt on the next turns, inside the window.

The model is the real embedded one behind a thin recording wrapper (it keeps the prompts it was
given, and can hold summary requests back so a test can see the reply finished first).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from guard_fakes import ScriptedBackend, SpyBackend
from service_support import serve
from websockets.sync.client import connect

from chat import ChatEngine
from chat.backends.base import Backend, Chunk
from chat.engine.window import fit_messages
from chat.i18n import t
from chat.messages import GenerationParams, Message, Notice
from chat.reply.notes import TurnNotes
from chat.reply.pipeline import run
from chat.reply.summaries import (
    INSTRUCTIONS,
    LABELS,
    NOTE_HEADER,
    SUMMARIZER,
    SUMMARY_TOKENS,
    SummaryJob,
    SummaryRecord,
    fingerprint,
    plan,
    summary_text,
)
from chat.reply.turn import Reply, ReplyRequest, StoredConversation
from chat.store import Store
from chat.store.store import StartedTurn

SYSTEM = Message("system", "You are a helpful shop assistant. Answer briefly.")
# Small enough that the third turn already leaves the first out, with short replies: every token
# the real model evaluates or writes here costs the suite time.
WINDOW = 320
PARAMS = GenerationParams(temperature=0.0, max_new_tokens=32, context_length=WINDOW)
MESSAGES = [
    "My name is Ana Lima and my order number is 4417. I bought a blue city bicycle with a basket, "
    "a bell and two spare tubes, and it was supposed to arrive last Monday at my flat in Porto.",
    "The bicycle has not arrived yet and the tracking page has said 'label created' for six days. "
    "Could you tell me what usually happens when a parcel stays in that state for so long?",
    "I also want to change the delivery address to my office, Rua das Flores 12, second floor, "
    "because nobody is at home during the day and the courier cannot leave large parcels outside.",
    "If the parcel is lost, I would prefer a replacement rather than a refund, because the same "
    "bicycle is sold out in every other shop I checked and I need it for my commute next month.",
    "One more thing: the spare tubes were a separate item. Were they shipped in the same parcel, "
    "or will they come on their own? I want to know how many deliveries to expect this week.",
    "Please remind me what my order number was, and what I asked you to do if the parcel is lost.",
    "Thanks. Can you also check whether the bell I ordered is the brass one or the black one?",
    "Last question for today: how long does a replacement usually take to be sent out to me?",
]
TURNS = [f"{a} {b}" for a, b in zip(MESSAGES[::2], MESSAGES[1::2], strict=True)]  # ~100 tokens each


class Recording(SpyBackend):
    """The real backend, keeping each prompt; summary requests wait for ``gate``."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.summary_prompts: list[list[Message]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.summary_started = threading.Event()

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        if messages[0].content in INSTRUCTIONS.values():
            self.summary_prompts.append(list(messages))
            self.gate.wait(120)
            for chunk in self.inner.stream(messages, params, cancel=cancel, api_key=api_key):
                self.summary_started.set()
                yield chunk
            return
        yield from super().stream(messages, params, cancel=cancel, api_key=api_key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    yield store
    store.close()


@pytest.fixture
def recording(local_backend: Backend) -> Iterator[Recording]:
    recording = Recording(local_backend)
    yield recording
    recording.gate.set()  # a failed test must not leave a summary waiting on the model
    SUMMARIZER.close(120)  # stops, within a token, a summary the last turn started: nobody reads it
    assert SUMMARIZER.wait(0)


def turn(engine: ChatEngine, store: Store, owner: str, cid: str, text: str) -> Reply:
    messages = [SYSTEM, *store.history(owner, cid), Message("user", text)]
    request = ReplyRequest(
        messages=messages, params=PARAMS, conversation=StoredConversation(store, owner, cid)
    )
    steps = list(run(engine, request))
    outcome = steps[-1]
    assert isinstance(outcome, Reply), outcome
    return outcome


# --- fitting and bookkeeping, without the model --------------------------------------------------


def words(messages: Sequence[Message]) -> int:
    return sum(len(m.content.split()) + 2 for m in messages)


NOTE = Message("system", "summary " * 30)
PROFILE = Message("system", "profile " * 10)
HISTORY = [Message("user" if i % 2 == 0 else "assistant", "word " * 10) for i in range(6)]
NEWEST = Message("user", "question " * 5)


@pytest.mark.parametrize(
    ("window", "dropped", "notes_dropped"),
    [(200, 0, 0), (120, 4, 0), (100, 6, 0), (80, 4, 1), (60, 6, 1), (40, 6, 2)],
)
def test_notes_go_after_every_history_turn_and_the_last_note_first(
    window: int, dropped: int, notes_dropped: int
) -> None:
    messages = [SYSTEM, PROFILE, NOTE, *HISTORY, NEWEST]
    fitted = fit_messages(messages, window=window, max_new_tokens=20, count=words)
    assert (fitted.dropped, fitted.notes_dropped) == (dropped, notes_dropped)
    assert fitted.messages[0] == SYSTEM and fitted.messages[-1] == NEWEST
    assert list(fitted.messages[1 : 3 - notes_dropped]) == [PROFILE, NOTE][: 2 - notes_dropped]
    assert fitted.prompt_tokens + fitted.reply_tokens <= window


def test_the_engine_says_when_a_note_was_left_out() -> None:
    engine = ChatEngine({"local": ScriptedBackend(["Fine."])})
    params = GenerationParams(max_new_tokens=16, context_length=64)
    events = list(
        engine.stream([SYSTEM, Message("user", "Hello")], params, notes=[Message("system", "x" * 400)])
    )
    kinds = [e.kind for e in events if isinstance(e, Notice)]
    assert "notes_dropped" in kinds
    assert events[-1].text == "Fine."


def test_the_record_round_trips_and_plain_text_covers_nothing() -> None:
    record = SummaryRecord("Ana's order 4417 is late.", 4, "abc")
    assert SummaryRecord.decode(record.encode()) == record
    assert SummaryRecord.decode("set by hand") == SummaryRecord("set by hand")
    assert SummaryRecord.decode("") == SummaryRecord()
    assert summary_text(record.encode()) == "Ana's order 4417 is late."


def test_the_plan_finds_the_cut_again_or_ignores_a_summary_of_another_history() -> None:
    history = [Message("user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(6)]
    record = SummaryRecord("summary", 2, fingerprint(history[1]))
    exact = plan(record.encode(), history)
    assert (exact.covered, exact.history) == (2, tuple(history[2:]))
    shifted = plan(record.encode(), [Message("user", "a client's extra"), *history])
    assert shifted.covered == 3 and shifted.history == tuple(history[2:])
    other = plan(record.encode(), [Message("user", "something else")])
    assert not other.active and other.covered == 0
    note = exact.note("zh")
    assert note is not None and note.role == "system" and note.content.startswith(NOTE_HEADER["zh"])


@pytest.mark.parametrize(
    ("covers", "left", "en", "zh"),
    [
        (0, 0, None, None),
        (4, 0, "The model sees the last 3 messages and a summary of the 4 before them.",
         "模型能看到最近的 3 条消息，以及之前 4 条消息的摘要。"),
        (0, 2, "The model sees only the last 5 messages: the 2 before them do not fit the context length.",
         "模型只能看到最近的 5 条消息：之前的 2 条放不进上下文长度。"),
        (2, 2, "The model sees the last 3 messages and a summary of the first 2; the 2 in between are "
         "left out until the summary catches up.",
         "模型能看到最近的 3 条消息和最早 2 条消息的摘要；中间的 2 条暂未写入摘要，本次未使用。"),
    ],
    ids=["all-seen", "summarised", "left-out", "both"],
)  # fmt: skip
def test_one_notice_says_what_the_model_still_sees(covers: int, left: int, en: str, zh: str) -> None:
    history = [Message("user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(6)]
    raw = SummaryRecord("summary", covers, fingerprint(history[covers - 1])).encode() if covers else ""
    for lang, text in (("en", en), ("zh", zh)):
        request = ReplyRequest(messages=[SYSTEM, *history, Message("user", "next")], params=PARAMS)
        notes = TurnNotes.load(request, StartedTurn(None, raw, None))  # type: ignore[arg-type]
        notice = notes.history_notice(lang, left)
        assert (notice.kind, notice.text) == ("trimmed", text) if text else notice is None
        if notice is not None:  # a page in the other language says it in its own
            other = "zh" if lang == "en" else "en"
            assert notice.say(other) == (zh if other == "zh" else en)


# --- the real model ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_summary_keeps_up_with_every_message_the_window_leaves_out(
    recording: Recording, store: Store
) -> None:
    """Turn after turn at a small window: the summary made after each reply (in the background,
    once the reply is complete) covers every message the next prompt leaves out, so the count
    summarised equals the count left out and the one notice says so."""
    engine = ChatEngine({"local": recording})
    owner = "user:ana"
    cid = store.create_conversation(owner).id
    left_out: list[int] = []
    held = False  # a summary job was running, held back, when its turn's reply was complete
    for index, text in enumerate(TURNS):
        recording.gate.clear()  # hold any summary back until the reply is in
        outcome = turn(engine, store, owner, cid, text)
        held = held or not SUMMARIZER.wait(0)
        recording.gate.set()
        assert SUMMARIZER.wait(120)
        prompt = recording.prompts[-1]
        seen = sum(m.role != "system" for m in prompt)  # the newest message included
        left = 2 * index + 1 - seen
        left_out.append(left)
        assert outcome.stats.dropped_messages == 0  # nothing left out that the summary misses
        if left:
            record = SummaryRecord.decode(store.get_conversation(owner, cid).summary)
            assert record.text and prompt[1].content.startswith(NOTE_HEADER["en"])
            assert prompt[0] == SYSTEM and all(TURNS[0] not in m.content for m in prompt)
            said = t("notice.history_summary", "en", seen=seen, summarised=left)
            assert [n.text for n in outcome.notices if n.kind == "trimmed"] == [said]
        assert recording.count_tokens(prompt) + outcome.stats.completion_tokens <= WINDOW
    assert left_out[-1] >= 4, left_out  # the window did leave turns out, and more as they came
    assert held  # the summary ran after its reply: it cost the reply nothing
    assert TURNS[0][:40] in recording.summary_prompts[0][1].content  # the oldest turn went first
    assert all(recording.count_tokens(p) + SUMMARY_TOKENS <= WINDOW for p in recording.summary_prompts)
    print(
        f"\nmessages left out per turn {left_out}, all summarised; {len(recording.summary_prompts)} "
        f"summaries, the last {SUMMARIZER.stats.last_seconds * 1000:.0f} ms"
    )


@pytest.mark.slow
def test_a_summary_gives_way_to_a_user_who_asks_for_the_model(recording: Recording, store: Store) -> None:
    engine = ChatEngine({"local": recording})
    owner = "user:bea"
    cid = store.create_conversation(owner).id
    history = []
    for text in TURNS:
        history += [Message("user", text), Message("assistant", "Noted, I will check that for you.")]
    conversation = StoredConversation(store, owner, cid)
    gave_way = SUMMARIZER.stats.gave_way
    thread = SUMMARIZER.after_reply(SummaryJob(engine, conversation, tuple(history), PARAMS, left_out=4))
    assert thread is not None
    assert recording.summary_started.wait(60)  # the summary is generating
    started = time.perf_counter()
    done = engine.reply([SYSTEM, Message("user", "Hello!")], PARAMS)
    waited = time.perf_counter() - started
    thread.join(60)
    assert SUMMARIZER.stats.gave_way == gave_way + 1
    assert store.get_conversation(owner, cid).summary == ""  # given up, tried again next turn
    assert done.text
    print(f"\na user's reply during a summary: {waited * 1000:.0f} ms in all")


class SlowScripted(ScriptedBackend):
    """Scripted words, ``delay`` seconds apart: a summary long enough to interrupt."""

    def __init__(self) -> None:
        super().__init__(["word "] * 100)
        self.delay = 0.05
        self.prompts: list[list[Message]] = []

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        self.prompts.append(list(messages))
        for chunk in super().stream(messages, params, cancel=cancel, api_key=api_key):
            if self.delay and cancel is not None and cancel.wait(self.delay):
                return
            yield chunk


def test_closing_stops_a_running_summary_and_the_next_app_summarises_again(store: Store) -> None:
    backend = SlowScripted()
    engine = ChatEngine({"local": backend})
    cid = store.create_conversation("user:cy").id
    conversation = StoredConversation(store, "user:cy", cid)
    history = [Message("user", "I am Cy."), Message("assistant", "Hi Cy."), Message("user", "Bye.")]
    thread = SUMMARIZER.after_reply(SummaryJob(engine, conversation, tuple(history), PARAMS, left_out=2))
    assert thread is not None
    deadline = time.monotonic() + 10
    while backend.sent < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    SUMMARIZER.close()  # as an app shutting down does, before its store closes
    assert not thread.is_alive() and store.get_conversation("user:cy", cid).summary == ""
    backend.delay = 0.0
    again = SUMMARIZER.after_reply(SummaryJob(engine, conversation, tuple(history), PARAMS, left_out=2))
    assert again is not None
    again.join(30)
    record = SummaryRecord.decode(store.get_conversation("user:cy", cid).summary)
    assert record.text.startswith("word word") and record.covers == 2


def test_a_reply_during_a_running_summary_has_its_job_run_next_on_top_of_it(store: Store) -> None:
    backend = SlowScripted()
    backend.delay = 0.005
    engine = ChatEngine({"local": backend})
    cid = store.create_conversation("user:di").id
    conversation = StoredConversation(store, "user:di", cid)
    turns = [Message("user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(6)]
    made = SUMMARIZER.stats.made
    first = SUMMARIZER.after_reply(SummaryJob(engine, conversation, tuple(turns[:4]), PARAMS, left_out=2))
    second = SUMMARIZER.after_reply(SummaryJob(engine, conversation, tuple(turns), PARAMS, left_out=4))
    assert first is not None and second is first  # not skipped: the same thread runs it next
    assert SUMMARIZER.wait(30)
    record = SummaryRecord.decode(store.get_conversation("user:di", cid).summary)
    assert record.covers == 4 and record.last == fingerprint(turns[3])
    assert SUMMARIZER.stats.made == made + 2
    asked = backend.prompts[-1][1].content  # the second summary folds turns 2-3 into the first
    assert asked.startswith(LABELS["en"]["so_far"]) and "message 2" in asked and "message 0" not in asked


class Recorder(ScriptedBackend):
    """A scripted reply ("Noted."), keeping the prompt of every reply (not of summaries)."""

    def __init__(self) -> None:
        super().__init__(["Noted", "."])
        self.seen: list[list[Message]] = []

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        if messages[0].content not in INSTRUCTIONS.values():  # a reply, not a summary
            self.seen.append(list(messages))
        return super().stream(messages, params, cancel=cancel, api_key=api_key)


def summarised(notices: list[dict[str, str]]) -> bool:
    """The one history notice, saying a summary stands in for earlier messages."""
    return any(n["kind"] == "trimmed" and "and a summary of the" in n["text"] for n in notices)


def test_rest_and_ws_turns_get_the_summary_and_the_api_shows_it_as_text(tmp_path: Path) -> None:
    backend = Recorder()
    engine = ChatEngine({"local": backend})
    context = {"system_prompt": "Be brief.", "context_length": 160, "max_new_tokens": 16}
    with serve(engine, data_dir=str(tmp_path)) as url, httpx.Client(base_url=url, timeout=30) as http:
        cid, body = None, {}
        for i in range(8):  # about 60 estimated tokens a message: turns soon stop fitting in 160
            said = {"user_input": f"Fact {i}: " + "detail " * 30, "context": context}
            body = http.post("/api/chat", json={**said, **({"conversation_id": cid} if cid else {})}).json()
            cid = body["conversation_id"]
            assert SUMMARIZER.wait(30)
            if summarised(body["notices"]):
                break
        assert summarised(body["notices"]), body["notices"]
        prompt = backend.seen[-1]
        assert prompt[0].content == "Be brief." and prompt[1].content.startswith(NOTE_HEADER["en"])
        assert backend.count_tokens(prompt) + 16 <= 160
        got = http.get(f"/api/conversations/{cid}").json()
        assert got["summary"] == "Noted."  # the text, not the stored bookkeeping
        assert http.get("/api/me/export").json()["conversations"][0]["summary"] == "Noted."

        cookie = f"chat_visitor={http.cookies['chat_visitor']}"
        ws_url = url.replace("http://", "ws://") + f"ws?conversation_id={cid}"
        with connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
            ws.send(json.dumps({"user_input": "And now?", "context": context}))
            while (frame := json.loads(ws.recv(timeout=30)))["type"] not in ("done", "error"):
                pass
        assert frame["type"] == "done"
        assert backend.seen[-1][1].content.startswith(NOTE_HEADER["en"])
        assert summarised(frame["notices"])
