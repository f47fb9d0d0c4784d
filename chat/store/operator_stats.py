"""The operator page's figures, read from the store: replies and users per day, time to first
token, refusals, cache hits, ratings by persona and model, and the lists worth reading (disliked
replies, questions the knowledge base had no source for, the most frequent questions).

Days are UTC days. Every figure comes from ``reply_facts`` (one row per reply, any entry point)
and, for ratings and texts, from the stored conversations it points at: a deleted conversation
leaves no trace here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chat.store.database import translate_errors
from chat.store.operator_tables import reply_facts
from chat.store.tables import conversations, feedback, messages

LIST_LIMIT = 20  # entries in each list of the page
SNIPPET = 300  # characters of a reply or question shown in a list
MAX_DAYS = 366


@dataclass(frozen=True)
class Window:
    """What the page looks at: ``since`` to ``until`` (UTC days, both included), one persona or all."""

    since: date
    until: date
    persona: str | None = None

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.until + timedelta(days=1), time(), UTC)

    def days(self) -> list[str]:
        return [
            (self.since + timedelta(days=n)).isoformat() for n in range((self.until - self.since).days + 1)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "persona": self.persona}


def operator_stats(engine: Engine, window: Window) -> dict[str, Any]:
    """Everything the page shows for ``window``, JSON-able (``GET /api/admin/stats``)."""
    with translate_errors(engine.url), engine.connect() as c:
        days = _days(c, window)
        ttft = _ttft(c, window, days)
        ratings = _ratings(c, window)
        return {
            "window": window.to_dict(),
            "personas": _personas(c),
            "totals": _totals(c, window, days, ttft, ratings),
            "days": list(days.values()),
            "refusals": _refusals(c, window),
            "ratings": ratings,
            "disliked": _disliked(c, window),
            "unanswered": _unanswered(c, window),
            "frequent": _frequent(c, window),
        }


r = reply_facts.c
_DAY = sa.func.date(r.created_at)


def _in(window: Window, query: sa.Select[Any]) -> sa.Select[Any]:
    query = query.where(r.created_at >= window.start, r.created_at < window.end)
    return query.where(r.persona == window.persona) if window.persona is not None else query


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _days(c: sa.Connection, window: Window) -> dict[str, dict[str, Any]]:
    days = {
        day: {"day": day, "messages": 0, "users": 0, "replies": 0, "cache_hits": 0, "refusals": 0}
        for day in window.days()
    }
    query = _in(
        window,
        sa.select(
            _DAY,
            sa.func.count(),
            sa.func.count(sa.distinct(r.owner_id)),
            _count(r.outcome == "ok"),
            _count((r.outcome == "ok") & r.from_cache),
            _count(r.outcome == "blocked"),
        ).group_by(_DAY),
    )
    for day, count, users, replies, hits, refusals in c.execute(query):
        key = str(day)[:10]
        if key in days:
            days[key].update(messages=count, users=users, replies=replies, cache_hits=hits, refusals=refusals)
    for entry in days.values():
        entry["cache_rate"] = round(entry["cache_hits"] / entry["replies"], 4) if entry["replies"] else None
    return days


def _ttft(c: sa.Connection, window: Window, days: dict[str, dict[str, Any]]) -> list[int]:
    """Per day, p50 and p95 of the time to first token of replies the model wrote (cache hits,
    answered in no time, would hide how the model does); returns every value, sorted."""
    query = _in(
        window,
        sa.select(_DAY, r.ttft_ms).where(r.outcome == "ok", ~r.from_cache, r.ttft_ms.is_not(None)),
    ).order_by(_DAY, r.ttft_ms)
    everything: list[int] = []
    by_day: dict[str, list[int]] = {}
    for day, ttft in c.execute(query):
        by_day.setdefault(str(day)[:10], []).append(ttft)
        everything.append(ttft)
    for day, entry in days.items():
        values = by_day.get(day, [])
        entry["ttft_p50_ms"], entry["ttft_p95_ms"] = percentile(values, 50), percentile(values, 95)
    everything.sort()
    return everything


def percentile(ordered: list[int], p: int) -> int | None:
    """The nearest-rank percentile of sorted values (None for none)."""
    if not ordered:
        return None
    rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
    return ordered[rank - 1]


def _totals(
    c: sa.Connection,
    window: Window,
    days: dict[str, dict[str, Any]],
    ttft: list[int],
    ratings: list[dict[str, Any]],
) -> dict[str, Any]:
    users = c.execute(_in(window, sa.select(sa.func.count(sa.distinct(r.owner_id))))).scalar_one()
    summed = {
        name: sum(d[name] for d in days.values())
        for name in ("messages", "replies", "cache_hits", "refusals")
    }
    return {
        **summed,
        "users": users,
        "cache_rate": round(summed["cache_hits"] / summed["replies"], 4) if summed["replies"] else None,
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p95_ms": percentile(ttft, 95),
        "likes": sum(x["likes"] for x in ratings),
        "dislikes": sum(x["dislikes"] for x in ratings),
    }


def _personas(c: sa.Connection) -> list[str]:
    query = sa.select(r.persona).where(r.persona != "").distinct().order_by(r.persona)
    return list(c.execute(query).scalars())


def _refusals(c: sa.Connection, window: Window) -> list[dict[str, Any]]:
    category = sa.func.coalesce(r.refusal, "other")
    query = _in(window, sa.select(category, sa.func.count()).where(r.outcome == "blocked")).group_by(category)
    found = [{"category": name, "count": count} for name, count in c.execute(query)]
    return sorted(found, key=lambda x: (-x["count"], x["category"]))


# The rated replies in a window: a rating counts on the day of the reply it rates; persona and
# model come from the reply's facts ("" for replies stored before they were noted).
m = messages.c
_RATED = feedback.join(messages, messages.c.id == feedback.c.message_id).outerjoin(
    reply_facts, r.message_id == messages.c.id
)


def _rated(window: Window, *columns: Any) -> sa.Select[Any]:
    query = (
        sa.select(*columns).select_from(_RATED).where(m.created_at >= window.start, m.created_at < window.end)
    )
    return query.where(r.persona == window.persona) if window.persona is not None else query


def _ratings(c: sa.Connection, window: Window) -> list[dict[str, Any]]:
    persona, model = sa.func.coalesce(r.persona, ""), sa.func.coalesce(r.model, "")
    query = _rated(
        window, persona, model, _count(feedback.c.rating > 0), _count(feedback.c.rating < 0)
    ).group_by(persona, model)
    found = [
        {"persona": p, "model": mo, "likes": likes, "dislikes": dislikes}
        for p, mo, likes, dislikes in c.execute(query)
    ]
    return sorted(found, key=lambda x: (-(x["likes"] + x["dislikes"]), x["persona"], x["model"]))


def _question_of(reply_id: Any, conversation_id: Any) -> sa.ScalarSelect[Any]:
    """The text of the newest user message before a reply in its conversation."""
    q = messages.alias("question")
    return (
        sa.select(sa.func.substr(q.c.content, 1, SNIPPET))
        .where(q.c.conversation_id == conversation_id, q.c.role == "user", q.c.id < reply_id)
        .order_by(q.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _disliked(c: sa.Connection, window: Window) -> list[dict[str, Any]]:
    query = (
        _rated(
            window,
            m.id,
            m.conversation_id,
            sa.func.substr(m.content, 1, SNIPPET),
            _question_of(m.id, m.conversation_id),
            sa.func.coalesce(r.persona, ""),
            sa.func.coalesce(r.model, ""),
            feedback.c.created_at,
        )
        .where(feedback.c.rating < 0)
        .order_by(feedback.c.created_at.desc(), m.id.desc())
        .limit(LIST_LIMIT)
    )
    names = ("message_id", "conversation_id", "reply", "question", "persona", "model", "rated_at")
    return [_row(names, row) for row in c.execute(query)]


def _questions(window: Window, *where: sa.ColumnElement[bool]) -> tuple[Any, sa.Select[Any]]:
    """Questions of the window's stored turns, grouped by their text (case and outer spaces aside)."""
    q = messages.alias("asked")
    text = sa.func.lower(sa.func.trim(q.c.content))
    query = _in(
        window,
        sa.select(
            sa.func.substr(sa.func.min(q.c.content), 1, SNIPPET),
            sa.func.count(),
            sa.func.max(r.created_at),
            sa.func.max(q.c.conversation_id),
        )
        .select_from(reply_facts.join(q, q.c.id == r.question_id))
        .where(*where),
    ).group_by(text)
    return sa.func.count(), query


def _unanswered(c: sa.Connection, window: Window) -> list[dict[str, Any]]:
    """Questions asked of a knowledge base that found no passage for them."""
    count, query = _questions(window, r.knowledge.is_not(None), r.sources == 0, r.outcome == "ok")
    query = query.add_columns(sa.func.max(r.knowledge)).order_by(
        count.desc(), sa.func.max(r.created_at).desc()
    )
    names = ("question", "count", "last_at", "conversation_id", "knowledge")
    return [_row(names, row) for row in c.execute(query.limit(LIST_LIMIT))]


def _frequent(c: sa.Connection, window: Window) -> list[dict[str, Any]]:
    count, query = _questions(window)
    query = query.order_by(count.desc(), sa.func.max(r.created_at).desc())
    names = ("question", "count", "last_at", "conversation_id")
    return [_row(names, row) for row in c.execute(query.limit(LIST_LIMIT))]


def _row(names: Iterable[str], row: Iterable[Any]) -> dict[str, Any]:
    return {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in zip(names, row, strict=True)
    }


def conversation_view(engine: Engine, conversation_id: str) -> dict[str, Any] | None:
    """One conversation whoever owns it, with its ratings: a disliked reply's context, for the
    operator only (``chat.service.admin``). None when there is no such conversation."""
    conv = conversations.c
    query = (
        sa.select(m.id, m.role, m.content, m.status, m.created_at, feedback.c.rating)
        .select_from(messages.outerjoin(feedback, feedback.c.message_id == m.id))
        .where(m.conversation_id == conversation_id)
        .order_by(m.id)
    )
    with translate_errors(engine.url), engine.connect() as c:
        head = c.execute(sa.select(conv.title, conv.created_at).where(conv.id == conversation_id)).first()
        if head is None:
            return None
        rows = c.execute(query).all()
    names = ("id", "role", "content", "status", "created_at", "rating")
    return {
        "id": conversation_id,
        "title": head.title,
        "created_at": head.created_at.isoformat(),
        "messages": [_row(names, row) for row in rows],
    }
