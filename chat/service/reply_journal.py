"""How each reply went, noted in the store for the operator page (``chat.store.reply_facts``).

``Tracker.run`` hands every outcome here, whichever way the request came in. The persona is
recognised by its system prompt (a persona is a prompt file, ``chat.reply.personas``): a prompt
of none of them is ``custom``. A failing database is logged and the reply goes on: the user
already has it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from chat.errors import ChatError
from chat.messages import Message
from chat.reply.personas import Persona
from chat.reply.turn import Failure, Outcome, Refusal, Reply, ReplyRequest
from chat.service.tracking import RequestRecord
from chat.store import Store
from chat.store.reply_facts import ReplyFacts, record_reply

log = logging.getLogger(__name__)

CUSTOM = "custom"  # a system prompt that is no persona's


class ReplyJournal:
    def __init__(self, store: Store, personas: Iterable[Persona]) -> None:
        self.store = store
        self._personas = {" ".join(p.prompt.split()): p.key for p in personas}

    def persona_of(self, messages: Sequence[Message]) -> str:
        """The persona whose prompt opens the conversation; ``custom`` for another, "" for none."""
        system = next((m.content for m in messages if m.role == "system"), "")
        if not system.strip():
            return ""
        return self._personas.get(" ".join(system.split()), CUSTOM)

    def __call__(self, record: RequestRecord, request: ReplyRequest, outcome: Outcome) -> None:
        stats = None if isinstance(outcome, Failure) else outcome.stats
        extra = stats.extra if stats is not None else {}
        ttft = record.time_to_first_token
        stored = request.conversation
        facts = ReplyFacts(
            entry=record.entry,
            outcome=record.outcome,
            model=(stats.model if stats else "") or record.backend,
            persona=self.persona_of(request.messages),
            refusal=(extra.get("guard_category") or outcome.stage) if isinstance(outcome, Refusal) else None,
            ttft_ms=round(ttft * 1000) if ttft is not None else None,
            from_cache=bool(stats and stats.from_cache),
            knowledge=request.knowledge,
            sources=len(outcome.sources) if isinstance(outcome, Reply) else 0,
            owner=stored.owner if stored is not None else None,
            message_id=extra.get("message_id") if stored is not None else None,
        )
        try:
            record_reply(self.store.engine, facts)
        except ChatError:
            log.warning("the reply's figures could not be stored (request %s)", record.id)
        except Exception as exc:  # noqa: BLE001 - a figure never fails a reply the user already has
            log.error(
                "the reply's figures could not be stored (request %s): %s", record.id, type(exc).__name__
            )
