"""Stored turns, ratings and reply figures on given days, for the operator page's tests."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from chat.store import Store
from chat.store.operator_tables import reply_facts
from chat.store.reply_facts import ReplyFacts, record_reply
from chat.store.tables import feedback, messages


def day(text: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{text}T{hour:02d}:00:00").replace(tzinfo=UTC)


def turn(
    store: Store,
    owner: str,
    conversation_id: str,
    question: str,
    reply: str,
    *,
    at: datetime,
    persona: str = "general",
    model: str = "smollm2",
    rating: int | None = None,
    ttft_ms: int | None = 400,
    from_cache: bool = False,
    knowledge: str | None = None,
    sources: int = 0,
) -> int:
    """One stored turn answered on ``at``, its figures noted and, with ``rating``, rated then.
    Returns the reply's message id."""
    started = store.start_turn(owner, conversation_id, question)
    with started.writer as writer:
        writer.finish("complete", text=reply)
    reply_id = writer.message_id
    facts = ReplyFacts(
        entry="rest",
        outcome="ok",
        model=model,
        persona=persona,
        ttft_ms=ttft_ms,
        from_cache=from_cache,
        knowledge=knowledge,
        sources=sources,
        owner=owner,
        message_id=reply_id,
    )
    record_reply(store.engine, facts)
    if rating is not None:
        assert store.set_feedback(owner, reply_id, rating)
    with store.engine.begin() as c:
        c.execute(
            sa.update(messages).where(messages.c.id.in_((reply_id - 1, reply_id))).values(created_at=at)
        )
        c.execute(sa.update(reply_facts).where(reply_facts.c.message_id == reply_id).values(created_at=at))
        c.execute(sa.update(feedback).where(feedback.c.message_id == reply_id).values(created_at=at))
    return reply_id


def refused(store: Store, category: str, *, at: datetime, persona: str = "general") -> None:
    """A message a guard refused: figures only, nothing stored."""
    record_reply(
        store.engine, ReplyFacts(entry="gradio", outcome="blocked", refusal=category, persona=persona)
    )
    with store.engine.begin() as c:
        newest = c.execute(sa.select(sa.func.max(reply_facts.c.id))).scalar_one()
        c.execute(sa.update(reply_facts).where(reply_facts.c.id == newest).values(created_at=at))
