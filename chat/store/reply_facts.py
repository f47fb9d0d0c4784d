"""Noting how each reply went (``reply_facts``): one short insert per reply, from every entry point.

The row holds figures only (model, persona, outcome, the guard's category, time to first token,
cache hit, knowledge sources found). A stored turn also points at its question and reply, so the
operator page can list what was asked and what was disliked, and deleting the conversation (or
its owner) deletes the row with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chat.store.database import translate_errors
from chat.store.operator_tables import reply_facts
from chat.store.tables import messages, utcnow

FIELD_LIMITS = {"entry": 16, "model": 200, "persona": 100, "outcome": 16, "refusal": 64, "knowledge": 64}


@dataclass(frozen=True, kw_only=True)
class ReplyFacts:
    entry: str
    outcome: str
    model: str = ""
    persona: str = ""
    refusal: str | None = None
    ttft_ms: int | None = None
    from_cache: bool = False
    knowledge: str | None = None
    sources: int = 0
    owner: str | None = None  # the conversation's owner, for a stored turn
    message_id: int | None = None  # the stored reply; its question is the user message before it


# The question is the newest user message before the reply in its conversation: found by the
# insert itself, so a turn costs one statement.
_QUESTION = (
    sa.select(sa.func.max(messages.c.id))
    .where(
        messages.c.role == "user",
        messages.c.id < sa.bindparam("reply_id"),
        messages.c.conversation_id
        == sa.select(messages.c.conversation_id)
        .where(messages.c.id == sa.bindparam("reply_id"))
        .scalar_subquery(),
    )
    .scalar_subquery()
)
_INSERT = sa.insert(reply_facts).values(question_id=_QUESTION)


def record_reply(engine: Engine, facts: ReplyFacts) -> None:
    """Insert one row; raises ``StoreError`` when the database fails (the caller logs it: a
    reply the user already has is never failed for its figures)."""
    values = {name: _cut(getattr(facts, name), limit) for name, limit in FIELD_LIMITS.items()}
    stored = facts.message_id is not None
    with translate_errors(engine.url), engine.begin() as c:
        c.execute(
            _INSERT,
            {
                **values,
                "created_at": utcnow(),
                "ttft_ms": facts.ttft_ms,
                "from_cache": facts.from_cache,
                "sources": facts.sources,
                "owner_id": facts.owner if stored else None,
                "message_id": facts.message_id,
                "reply_id": facts.message_id,
            },
        )


def _cut(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]
