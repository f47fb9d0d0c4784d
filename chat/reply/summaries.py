"""Summaries of turns that no longer fit the context (issue 12, point 6).

After every stored reply a background thread (one per conversation at a time) works out which of
the oldest messages the next turn will have to leave out, and has the model fold them into the
running summary, so the reply is never delayed and the summary keeps up with the window:

    turn n:    [system] [summary note] [history after the summary .....] [newest] -> reply
    after it:  cut  := the messages the next turn leaves out (fitted as that turn will be)
               summary := model(previous summary + the messages up to the cut)   (background)
    turn n+1:  [system] [summary note] [history after the summary] [newest]

The summary is kept with the conversation (``Store.set_summary``) as a small JSON record: its
text, how many of the oldest history messages it replaces (``covers``) and a fingerprint of the
last of them, so the cut is found again even if a client sends a slightly different history.
On the next turns the pipeline leaves those messages out and sends the summary as a clearly
marked system note right after the system prompt; fitting treats the note like the system
prompt but lets it go before failing (``chat.engine.window``), so it always stays inside the budget.

The job never competes with a user for the one local model: it starts only when nobody is
queued, gives way (Stop, within a token) as soon as someone else asks for the model, and is
simply tried again after the next reply. A reply that ends while its conversation's job still
runs leaves its own job to run right after it (the newest one only), so no turn is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chat.engine.window import fit_messages
from chat.errors import ChatError, ContextOverflow, OutputBlocked
from chat.i18n import Lang, detect_language
from chat.messages import GenerationParams, Message, Waiting

if TYPE_CHECKING:
    from chat.backends.base import Backend
    from chat.engine import ChatEngine
    from chat.reply.turn import StoredConversation

log = logging.getLogger(__name__)

SUMMARY_TOKENS = 96  # max new tokens of one summary
SUMMARY_MAX_CHARS = 600  # the stored summary is cut (at a sentence end) to this
MESSAGE_CHARS = 500  # each dropped message, as the summariser reads it
MIN_MESSAGE_CHARS = 60  # a message is cut down to this before a turn is given up as too long
# A request the batching model admits at its next step is not kept waiting by a summary: only one
# still waiting a token later makes the summary give way (each new request waits for one step).
GIVE_WAY_TOKENS = 2

NOTE_HEADER: dict[Lang, str] = {
    "en": "Summary of the earlier conversation (those messages are no longer shown):",
    "zh": "之前对话的摘要（这些消息已不再显示）：",
}
INSTRUCTIONS: dict[Lang, str] = {
    "en": "You summarise conversations. Write a short summary, at most three sentences, of the "
    "summary so far and the new messages. Keep names, numbers, facts, preferences and decisions. "
    "Write only the summary.",
    "zh": "你负责总结对话。请把已有摘要和新消息合并成简短的摘要，最多三句话。保留姓名、数字、事实、偏好和决定。只写摘要。",
}
LABELS: dict[Lang, dict[str, str]] = {
    "en": {"so_far": "Summary so far", "new": "New messages", "user": "User", "assistant": "Assistant"},
    "zh": {"so_far": "已有摘要", "new": "新消息", "user": "用户", "assistant": "助手"},
}


@dataclass(frozen=True)
class SummaryRecord:
    """What the conversation's ``summary`` column holds."""

    text: str = ""
    covers: int = 0  # the oldest history messages (user and assistant) the summary replaces
    last: str = ""  # fingerprint of the last of them

    def encode(self) -> str:
        return json.dumps({"text": self.text, "covers": self.covers, "last": self.last}, ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str | None) -> SummaryRecord:
        """The stored record; plain text (a summary set by hand) covers no message."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls(text=raw)
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return cls(text=raw)
        covers, last = data.get("covers"), data.get("last")
        return cls(
            data["text"],
            covers if isinstance(covers, int) and covers >= 0 else 0,
            last if isinstance(last, str) else "",
        )


def summary_text(raw: str | None) -> str:
    """The summary a person reads (the API, the export): the text without the bookkeeping."""
    return SummaryRecord.decode(raw).text


def fingerprint(message: Message) -> str:
    return hashlib.sha256(f"{message.role}\0{message.content}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SummaryPlan:
    """One turn's view of the summary: the history it still needs and the note that replaces
    the rest. ``covered`` history messages are left out (0 without a usable summary)."""

    record: SummaryRecord
    covered: int
    history: tuple[Message, ...]  # the history after the summary, oldest first

    @property
    def active(self) -> bool:
        return bool(self.record.text)

    def note(self, lang: Lang) -> Message | None:
        if not self.active:
            return None
        return Message("system", f"{NOTE_HEADER[lang]}\n{self.record.text}")


def plan(raw: str | None, history: Sequence[Message]) -> SummaryPlan:
    """Line the stored summary up with ``history`` (the conversation before the newest message,
    system messages excluded). A summary whose last covered message is nowhere in it is ignored:
    it describes a different conversation (a client edited it), and a fresh one will be made."""
    record = SummaryRecord.decode(raw)
    if not record.text:
        return SummaryPlan(SummaryRecord(), 0, tuple(history))
    if not record.covers:
        return SummaryPlan(record, 0, tuple(history))
    at = _aligned(history, record)
    if at is None:
        return SummaryPlan(SummaryRecord(), 0, tuple(history))
    return SummaryPlan(record, at, tuple(history[at:]))


def _aligned(history: Sequence[Message], record: SummaryRecord) -> int | None:
    """The number of leading messages the summary covers in ``history``, or None."""
    n = record.covers
    if 0 < n <= len(history) and fingerprint(history[n - 1]) == record.last:
        return n
    matches = [i + 1 for i, m in enumerate(history) if fingerprint(m) == record.last]
    return min(matches, key=lambda i: abs(i - n)) if matches else None


# --- the background job -------------------------------------------------------------------------


@dataclass
class SummaryStats:
    """What the jobs did, for tests and the log: made, skipped (model busy), gave way, failed."""

    made: int = 0
    busy: int = 0
    gave_way: int = 0
    failed: int = 0
    last_seconds: float = 0.0


@dataclass(frozen=True)
class SummaryJob:
    """What one background summary works from: the conversation as it stands after a reply, the
    part of it the reply's prompt went without, and what the next turn sends before it."""

    engine: ChatEngine
    conversation: StoredConversation
    history: tuple[Message, ...]  # every message after the system prompt, the new reply last
    params: GenerationParams
    left_out: int = 0  # the oldest of them the reply's prompt went without (summarised or not)
    summary: SummaryPlan | None = None  # the summary the reply's prompt carried
    prefix: tuple[Message, ...] = ()  # the system prompt and the profile note
    lang: Lang = "en"  # the note's language
    backend: str | None = None
    api_key: str | None = None


class Summarizer:
    """Runs summary jobs in background threads, one per conversation at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[int, str], threading.Thread] = {}
        self._next: dict[tuple[int, str], SummaryJob] = {}  # the newest job behind a running one
        self._closing = threading.Event()
        self.stats = SummaryStats()

    def after_reply(self, job: SummaryJob) -> threading.Thread | None:
        """Bring the conversation's summary up to what the next turn will leave out, in the
        background. The thread doing it (None while closing); a conversation whose job is still
        running gets this one right after it, in the same thread."""
        key = (id(job.conversation.store), job.conversation.id)
        with self._lock:
            if self._closing.is_set():
                return None
            if key in self._running:  # one at a time: the newest reply's job runs next
                self._next[key] = job
                return self._running[key]
            thread = threading.Thread(
                target=self._run, args=(key, job), name=f"summary-{job.conversation.id[:8]}", daemon=True
            )
            self._running[key] = thread
        thread.start()
        return thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop the running jobs within a token (an app shutting down: before its store and
        model close under them). Jobs asked for afterwards run again (another app in the same
        process, as in the tests)."""
        self._closing.set()
        try:
            self.wait(timeout)
        finally:
            self._closing.clear()

    def wait(self, timeout: float = 60.0) -> bool:
        """Wait for the running jobs (tests, shutdown); False when some are still running."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._running.values())
            if not threads:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            threads[0].join(left)

    def _run(self, key: tuple[int, str], job: SummaryJob | None) -> None:
        while job is not None:
            started = time.perf_counter()
            try:
                self._summarise(job)
            except ChatError as exc:  # a failing store or backend: the next turn tries again
                self.stats.failed += 1
                log.warning(
                    "summary of conversation %s failed: %s", job.conversation.id[:8], type(exc).__name__
                )
            except Exception:  # noqa: BLE001 - a background thread's seam: logged, never raised
                self.stats.failed += 1
                log.exception("summary of conversation %s failed", job.conversation.id[:8])
            finally:
                self.stats.last_seconds = time.perf_counter() - started
                with self._lock:
                    job = None if self._closing.is_set() else self._next.pop(key, None)
                    if job is None:
                        self._next.pop(key, None)
                        self._running.pop(key, None)

    def _summarise(self, job: SummaryJob) -> None:
        engine, conversation = job.engine, job.conversation
        backend = engine.chain(job.backend)[0]
        if backend.readiness() is not None:  # closed (or not loaded): nothing to count with
            return
        window = min(job.params.context_length, backend.context_window() or job.params.context_length)
        summary = job.summary or plan("", job.history)
        cut = next_cut(job, backend, window, summary.covered)
        if cut > summary.covered:  # the stored summary may have gone further since the turn began
            stored = conversation.store.get_conversation(conversation.owner, conversation.id)
            summary = plan(stored.summary, job.history)
            cut = max(cut, next_cut(job, backend, window, summary.covered))
        record, covered = summary.record, summary.covered
        pending = list(job.history[covered:cut])
        while pending:
            if self._closing.is_set():
                return
            if not backend.room_for_background() or backend.readiness() is not None:
                self.stats.busy += 1
                return
            previous = record.text
            lang = detect_language(" ".join(m.content for m in pending[:4]) + previous)
            count, prompt = _chunk(backend, previous, pending, window, lang)
            text = _generate(engine, backend, prompt, window, job.api_key, self._closing)
            if text is None:
                self.stats.gave_way += 1
                return
            covered += count
            record = SummaryRecord(text or previous, covered, fingerprint(pending[count - 1]))
            if not conversation.store.set_summary(conversation.owner, conversation.id, record.encode()):
                return  # deleted meanwhile
            self.stats.made += 1
            pending = pending[count:]


def next_cut(job: SummaryJob, backend: Backend, window: int, covered: int) -> int:
    """How many of the oldest history messages the summary must replace: those the reply's
    prompt went without, and those the next turn will leave out, fitted as that turn will be
    (the summary note at its longest, a next message as long as the newest one)."""
    asked = [m for m in job.history if m.role == "user"]
    if not asked:
        return job.left_out
    note = Message("system", f"{NOTE_HEADER[job.lang]}\n{_LONGEST_SUMMARY}")
    try:
        fitted = fit_messages(
            [*job.prefix, note, *job.history[covered:], asked[-1]],
            window=window,
            max_new_tokens=job.params.max_new_tokens,
            count=backend.count_tokens,
            cost=backend.message_tokens,
        )
    except ContextOverflow:  # the next message alone would not fit: nothing to plan for
        return job.left_out
    return max(job.left_out, covered + fitted.dropped)


_LONGEST_SUMMARY = " ".join(["summary"] * SUMMARY_TOKENS)  # as many tokens as a summary may have


def _chunk(
    backend: Backend, previous: str, pending: Sequence[Message], window: int, lang: Lang
) -> tuple[int, list[Message]]:
    """The most whole turns from the start of ``pending`` whose summary prompt fits the window
    beside the summary (messages are cut short first, then fewer turns are taken)."""
    budget = window - SUMMARY_TOKENS
    starts = [i for i, m in enumerate(pending) if m.role == "user" and i > 0] + [len(pending)]
    for chars in (MESSAGE_CHARS, MIN_MESSAGE_CHARS):
        for end in reversed(starts):
            prompt = _prompt(previous, pending[:end], lang, chars)
            if backend.count_tokens(prompt) <= budget:
                return end, prompt
    return starts[0], _prompt(
        previous[: SUMMARY_MAX_CHARS // 4], pending[: starts[0]], lang, MIN_MESSAGE_CHARS
    )


def _prompt(previous: str, turns: Sequence[Message], lang: Lang, chars: int) -> list[Message]:
    labels = LABELS[lang]
    lines = [f"{labels[m.role]}: {_cut(m.content, chars)}" for m in turns if m.role in labels]
    parts = [f"{labels['so_far']}:\n{previous}\n"] if previous else []
    parts.append(f"{labels['new']}:\n" + "\n".join(lines))
    return [Message("system", INSTRUCTIONS[lang]), Message("user", "\n".join(parts))]


def _cut(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _generate(
    engine: ChatEngine,
    backend: Backend,
    prompt: list[Message],
    window: int,
    api_key: str | None,
    closing: threading.Event,
) -> str | None:
    """The summary text ("" when the model wrote nothing usable), or None when the job gave way
    to a user (someone queued for the model), the server is closing or the output guard
    withheld it."""
    params = GenerationParams(temperature=0.0, max_new_tokens=SUMMARY_TOKENS, context_length=window)
    cancel = threading.Event()
    out = engine.output_guard.new_filter() if engine.output_guard is not None else None
    text: list[str] = []
    waited = 0  # tokens in a row during which a user waited for the model
    chunks: Iterator[object] = backend.stream(prompt, params, cancel=cancel, api_key=api_key)
    try:
        for chunk in chunks:
            if isinstance(chunk, str):
                text.append(out.feed(chunk) if out else chunk)
                waited = waited + 1 if backend.user_waiting() else 0
                if waited >= GIVE_WAY_TOKENS or closing.is_set():  # a user waits: give way
                    cancel.set()
                    return None
            elif isinstance(chunk, Waiting):  # queued behind someone: not our turn
                cancel.set()
                return None
        if out is not None:
            text.append(out.flush())
    except OutputBlocked:
        return None
    finally:
        chunks.close()  # type: ignore[attr-defined]
    return _tidy("".join(text))


def _tidy(text: str) -> str:
    """One paragraph, at most ``SUMMARY_MAX_CHARS``, cut at a sentence end when there is one."""
    text = " ".join(text.split())
    if len(text) <= SUMMARY_MAX_CHARS:
        return text
    head = text[:SUMMARY_MAX_CHARS]
    end = max(head.rfind(mark) for mark in (". ", "。", "! ", "? ", "！", "？"))
    return head[: end + 1] if end > SUMMARY_MAX_CHARS // 2 else head[:-1] + "…"


SUMMARIZER = Summarizer()
"""The process's summary jobs (one per conversation at a time)."""
