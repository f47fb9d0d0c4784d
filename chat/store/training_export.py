"""Rated replies as training data, read from the store in constant memory (issue 34).

``sft``: each liked reply with the messages before it, in OpenAI chat format. ``dpo``: pairs of
replies to the same prompt (the same stored messages before them: after Retry, or in separate
conversations) where one was liked and the other disliked. Both walk the conversations that hold
rated replies a batch at a time, each batch a short transaction of its own: an export of any size
holds one batch in memory and never keeps the database busy for its whole length. A deleted
conversation or owner is gone from the store, so from every later export too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chat.store.database import translate_errors
from chat.store.operator_tables import export_log, reply_facts
from chat.store.tables import feedback, messages, utcnow

FORMATS = ("sft", "dpo")
BATCH = 50  # conversations read per transaction


@dataclass(frozen=True)
class ExportFilter:
    since: datetime | None = None  # ratings given at or after this time
    persona: str | None = None  # replies written as this persona (its key)

    def describe(self) -> str:
        return json.dumps(
            {"since": self.since.isoformat() if self.since else None, "persona": self.persona},
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class Rated:
    """A rated reply as the walk meets it, with the stored messages before it."""

    conversation_id: str
    message_id: int
    content: str
    rating: int
    rated_at: datetime
    model: str
    persona: str
    prompt: tuple[dict[str, str], ...]

    def key(self) -> bytes:
        """What makes two replies answers to the same prompt: the same messages before them."""
        text = json.dumps(self.prompt, ensure_ascii=False, separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=16).digest()


def sft_lines(engine: Engine, selected: ExportFilter) -> Iterator[dict[str, Any]]:
    """Each liked reply: ``{"messages": [..., {"role": "assistant", ...}], "rating", "model",
    "persona", "conversation_id", "message_id"}``; disliked replies are never in it."""
    for reply in _walk(engine, selected, ratings=(1,)):
        if _chosen(reply, selected):
            yield {
                "messages": [*reply.prompt, {"role": "assistant", "content": reply.content}],
                "rating": reply.rating,
                "model": reply.model,
                "persona": reply.persona,
                "conversation_id": reply.conversation_id,
                "message_id": reply.message_id,
            }


def dpo_lines(engine: Engine, selected: ExportFilter) -> Iterator[dict[str, Any]]:
    """``{"prompt": [...], "chosen": "...", "rejected": "..."}`` for every liked and disliked
    reply to the same prompt (a pair is new when either rating is at or after ``since``).

    The first walk keeps only a 16-byte key, an id and a time per rated reply; the second reads
    each pair's prompt and texts as it writes it."""
    groups: dict[bytes, tuple[list[tuple[int, datetime]], list[tuple[int, datetime]]]] = {}
    unfiltered = ExportFilter(persona=selected.persona)
    for reply in _walk(engine, unfiltered, ratings=(1, -1)):
        if selected.persona is not None and reply.persona != selected.persona:
            continue
        liked, disliked = groups.setdefault(reply.key(), ([], []))
        (liked if reply.rating > 0 else disliked).append((reply.message_id, reply.rated_at))
    for liked, disliked in groups.values():
        for chosen, chosen_at in liked:
            for rejected, rejected_at in disliked:
                if selected.since is None or max(chosen_at, rejected_at) >= selected.since:
                    yield _pair(engine, chosen, rejected)


def _chosen(reply: Rated, selected: ExportFilter) -> bool:
    if selected.persona is not None and reply.persona != selected.persona:
        return False
    return reply.rating > 0 and (selected.since is None or reply.rated_at >= selected.since)


def _rated_conversations(selected: ExportFilter, ratings: tuple[int, ...], after: str) -> sa.Select[Any]:
    query = (
        sa.select(messages.c.conversation_id)
        .select_from(feedback.join(messages, messages.c.id == feedback.c.message_id))
        .where(feedback.c.rating.in_(ratings), messages.c.conversation_id > after)
    )
    if selected.since is not None:
        query = query.where(feedback.c.created_at >= selected.since)
    if selected.persona is not None:
        query = query.join(reply_facts, reply_facts.c.message_id == messages.c.id).where(
            reply_facts.c.persona == selected.persona
        )
    return query.distinct().order_by(messages.c.conversation_id).limit(BATCH)


_MESSAGES = (
    sa.select(
        messages.c.conversation_id,
        messages.c.id,
        messages.c.role,
        messages.c.content,
        feedback.c.rating,
        feedback.c.created_at,
        sa.func.coalesce(reply_facts.c.model, ""),
        sa.func.coalesce(reply_facts.c.persona, ""),
    )
    .select_from(
        messages.outerjoin(feedback, feedback.c.message_id == messages.c.id).outerjoin(
            reply_facts, reply_facts.c.message_id == messages.c.id
        )
    )
    .where(messages.c.conversation_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(messages.c.conversation_id, messages.c.id)
)


def _walk(engine: Engine, selected: ExportFilter, *, ratings: tuple[int, ...]) -> Iterator[Rated]:
    """Every rated reply (of ``ratings``) in the conversations that hold one, with its prompt:
    the stored messages with text before it (as ``Store.history`` gives them to the model)."""
    after = ""
    while True:
        with translate_errors(engine.url), engine.connect() as c:
            ids = list(c.execute(_rated_conversations(selected, ratings, after)).scalars())
            rows = c.execute(_MESSAGES, {"ids": ids}).all() if ids else []
        if not ids:
            return
        after = ids[-1]
        prompt: list[dict[str, str]] = []
        current = None
        for conversation_id, message_id, role, content, rating, rated_at, model, persona in rows:
            if conversation_id != current:
                current, prompt = conversation_id, []
            if rating in ratings and role == "assistant" and content:
                yield Rated(
                    conversation_id, message_id, content, rating, rated_at, model, persona, tuple(prompt)
                )
            if content or role == "user":
                prompt.append({"role": role, "content": content})
        del rows


def _pair(engine: Engine, chosen: int, rejected: int) -> dict[str, Any]:
    """One dpo line: the prompt (read again: the walk kept only its key) and both replies."""
    wanted = (
        messages.c.id,
        messages.c.conversation_id,
        messages.c.content,
        sa.func.coalesce(reply_facts.c.model, ""),
    )
    with translate_errors(engine.url), engine.connect() as c:
        found = {
            row[0]: row
            for row in c.execute(
                sa.select(*wanted)
                .select_from(messages.outerjoin(reply_facts, reply_facts.c.message_id == messages.c.id))
                .where(messages.c.id.in_((chosen, rejected)))
            )
        }
        conversation_id = found[chosen][1]
        before = c.execute(
            sa.select(messages.c.role, messages.c.content)
            .where(messages.c.conversation_id == conversation_id, messages.c.id < chosen)
            .order_by(messages.c.id)
        ).all()
    return {
        "prompt": [
            {"role": role, "content": content} for role, content in before if content or role == "user"
        ],
        "chosen": found[chosen][2],
        "rejected": found[rejected][2],
        "chosen_model": found[chosen][3],
        "rejected_model": found[rejected][3],
        "chosen_message_id": chosen,
        "rejected_message_id": rejected,
        "conversation_ids": sorted({conversation_id, found[rejected][1]}),
    }


def log_export(engine: Engine, *, operator: str, fmt: str, selected: ExportFilter) -> int:
    """Keep who takes an export, when and with which filters (``export_log``), before its first
    line is sent; ``finish_export`` adds how many rows it held. Returns the entry's id."""
    with translate_errors(engine.url), engine.begin() as c:
        return c.execute(
            sa.insert(export_log)
            .values(
                created_at=utcnow(),
                operator=operator[:200],
                format=fmt,
                filters=selected.describe()[:400],
                row_count=0,
                complete=False,
            )
            .returning(export_log.c.id)
        ).scalar_one()


def finish_export(engine: Engine, entry: int, *, rows: int, complete: bool) -> None:
    with translate_errors(engine.url), engine.begin() as c:
        c.execute(
            sa.update(export_log).where(export_log.c.id == entry).values(row_count=rows, complete=complete)
        )


def recent_exports(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    e = export_log.c
    query = sa.select(e.created_at, e.operator, e.format, e.filters, e.row_count, e.complete)
    with translate_errors(engine.url), engine.connect() as c:
        rows = c.execute(query.order_by(e.id.desc()).limit(limit)).all()
    return [
        {
            "at": at.isoformat(),
            "operator": who,
            "format": fmt,
            "filters": json.loads(filters or "{}"),
            "rows": n,
            "complete": done,
        }
        for at, who, fmt, filters, n, done in rows
    ]
