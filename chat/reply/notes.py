"""What a stored conversation's turn adds after the system prompt: the owner's profile (when they
opted in) and the summary of turns that no longer fit, in place of those turns.

The pipeline calls ``TurnNotes.load`` with what the stored turn read as it started (the statement
that marks the conversation active reads both notes), sends ``messages`` with ``notes`` to the
engine (which fits the notes like the system prompt, but drops them before failing), and calls
``after`` with the outcome: a kept reply starts a background job that brings the summary up to
what the next turn will leave out (``chat.reply.summaries``). ``history_notice`` is the one
sentence that tells the user what the model still sees of a long conversation.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from chat.i18n import Lang, t
from chat.messages import Message, Notice, system_end
from chat.reply.profiles import profile_note
from chat.reply.summaries import SUMMARIZER, SummaryJob, SummaryPlan, plan
from chat.reply.turn import Outcome, Reply, ReplyRequest

if TYPE_CHECKING:
    from chat.engine import ChatEngine
    from chat.store.store import StartedTurn

log = logging.getLogger(__name__)
KEPT_FINISHES = ("stop", "length")  # replies that continue the conversation


@dataclass(frozen=True)
class HistoryNotice(Notice):
    """The one notice of a conversation the window cut (kind ``trimmed``), with its counts, so a
    page says it in its own language (``say``) whatever language the message was in."""

    seen: int = 0  # the newest messages the prompt holds, the newest one included
    summarised: int = 0  # the oldest messages the summary note stands in for
    left: int = 0  # the messages between them, left out without a summary yet

    @classmethod
    def of(cls, lang: Lang, seen: int, summarised: int, left: int) -> HistoryNotice:
        notice = cls("trimmed", "", seen, summarised, left)
        return replace(notice, text=notice.say(lang))

    def say(self, lang: Lang) -> str:
        if not self.summarised:
            key = "notice.history_trimmed"
        elif self.left:
            key = "notice.history_both"
        else:
            key = "notice.history_summary"
        return t(key, lang, seen=self.seen, summarised=self.summarised, left=self.left)


@dataclass(frozen=True)
class TurnNotes:
    messages: list[Message]  # the request's messages, without the turns the summary replaces
    notes: list[Message] = field(default_factory=list)  # system notes, in order
    summary: SummaryPlan | None = None
    prefix: tuple[Message, ...] = ()  # what comes before the summary: system prompt, profile note
    history: tuple[Message, ...] = ()  # the whole conversation before the newest message

    @classmethod
    def load(cls, request: ReplyRequest, started: StartedTurn | None) -> TurnNotes:
        """The notes for ``request`` from what its stored turn read when it started (none
        without a stored conversation)."""
        messages = list(request.messages)
        if started is None or not messages:
            return cls(messages)
        raw, profile = started.summary, started.profile
        at = system_end(messages)
        history = [m for m in messages[at:-1] if m.role != "system"]
        summary = plan(raw, history)
        lang = request.lang
        profile_ = profile_note(profile, lang, request.user_input)
        notes = [note for note in (profile_, summary.note(lang)) if note]
        kept = [*messages[:at], *summary.history, messages[-1]]
        prefix = (*messages[:at], *([profile_] if profile_ else []))
        return cls(kept, notes, summary, prefix, tuple(history))

    @property
    def summarised(self) -> int:
        """The oldest messages the summary note stands in for."""
        return self.summary.covered if self.summary is not None and self.summary.active else 0

    def history_notice(self, lang: Lang, left: int) -> HistoryNotice | None:
        """One sentence on what the model sees of a conversation the window cut: the last messages
        and a summary of the ones before, and any left out without a summary yet (``left``: the
        messages fitting dropped). None when it sees everything."""
        summarised = self.summarised
        if not (summarised or left):
            return None
        seen = max(sum(m.role != "system" for m in self.messages) - left, 1)
        return HistoryNotice.of(lang, seen, summarised, left)

    def after(self, engine: ChatEngine, request: ReplyRequest, outcome: Outcome) -> threading.Thread | None:
        """Bring the summary up to what the next turn will leave out (in the background)."""
        conversation = request.conversation
        if conversation is None or self.summary is None or not isinstance(outcome, Reply):
            return None
        if outcome.stats.finish_reason not in KEPT_FINISHES:
            return None
        job = SummaryJob(
            engine,
            conversation,
            (*self.history, self.messages[-1], Message("assistant", outcome.text)),
            request.params,
            left_out=self.summary.covered + outcome.stats.dropped_messages,
            summary=self.summary,
            prefix=self.prefix,
            lang=request.lang,
            backend=outcome.stats.backend if outcome.stats.backend in engine.backends else request.backend,
            api_key=request.api_key,
        )
        return SUMMARIZER.after_reply(job)
