"""What a stored conversation's turn adds after the system prompt: the owner's profile (when they
opted in) and the summary of turns that no longer fit, in place of those turns.

The pipeline calls ``TurnNotes.load`` with what the stored turn read as it started (the statement
that marks the conversation active reads both notes), sends ``messages`` with ``notes`` to the
engine (which fits the notes like the system prompt, but drops them before failing), and calls
``after`` with the outcome: a reply whose fitting left turns out starts a background summary of
them (``chat.reply.summaries``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chat.messages import Message, Notice, system_end
from chat.reply.profiles import profile_note
from chat.reply.summaries import SUMMARIZER, SummaryPlan, plan
from chat.reply.turn import Outcome, Reply, ReplyRequest

if TYPE_CHECKING:
    from chat.engine import ChatEngine
    from chat.store.store import StartedTurn

log = logging.getLogger(__name__)
KEPT_FINISHES = ("stop", "length")  # replies that continue the conversation


@dataclass(frozen=True)
class TurnNotes:
    messages: list[Message]  # the request's messages, without the turns the summary replaces
    notes: list[Message] = field(default_factory=list)  # system notes, in order
    notices: list[Notice] = field(default_factory=list)  # what the user is told
    summary: SummaryPlan | None = None

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
        notes = [note for note in (profile_note(profile, lang), summary.note(lang)) if note]
        notice = summary.notice(lang)
        kept = [*messages[:at], *summary.history, messages[-1]]
        return cls(kept, notes, [notice] if notice else [], summary)

    def after(self, engine: ChatEngine, request: ReplyRequest, outcome: Outcome) -> threading.Thread | None:
        """Start summarising the turns this reply's fitting left out (in the background)."""
        conversation = request.conversation
        if conversation is None or self.summary is None or not isinstance(outcome, Reply):
            return None
        if outcome.stats.finish_reason not in KEPT_FINISHES or not outcome.stats.dropped_messages:
            return None
        return SUMMARIZER.after_reply(
            engine,
            conversation,
            self.summary,
            outcome.stats.dropped_messages,
            params=request.params,
            backend=outcome.stats.backend if outcome.stats.backend in engine.backends else request.backend,
            api_key=request.api_key,
        )
