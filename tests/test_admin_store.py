"""The operator page's figures and the training exports, read from a real store on SQLite and on
PostgreSQL: stats by day and persona, sft and dpo lines and their pairing rules, deleted users
left out, the export log, and an export of thousands of rows in constant memory."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from admin_seed import day, refused, turn
from pg import DATABASES, empty_database

from chat.store import Store
from chat.store.operator_stats import Window, conversation_view, operator_stats, percentile
from chat.store.tables import conversations, feedback, messages, owners, utcnow
from chat.store.training_export import (
    ExportFilter,
    dpo_lines,
    finish_export,
    log_export,
    recent_exports,
    sft_lines,
)

ANA, BO = "user:ana", "anon:bo-77"


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    store = Store.open(empty_database(request, tmp_path))
    yield store
    store.close()


def seeded(store: Store) -> dict[str, int]:
    """Two days of use: two owners, two personas, two models, a cache hit, refusals, ratings and
    a knowledge base that found nothing for one question."""
    a, b, c = (store.create_conversation(o).id for o in (ANA, ANA, BO))
    ids = {
        "liked": turn(
            store,
            ANA,
            a,
            "How do I return shoes?",
            "Send them back within 30 days.",
            at=day("2026-03-01"),
            persona="shop_support",
            model="m1",
            rating=1,
            ttft_ms=300,
            knowledge="shop",
            sources=2,
        ),
        "disliked": turn(
            store,
            ANA,
            a,
            "And the refund?",
            "No idea.",
            at=day("2026-03-01", 13),
            persona="shop_support",
            model="m1",
            rating=-1,
            ttft_ms=900,
            knowledge="shop",
        ),
        "cached": turn(
            store,
            ANA,
            b,
            "How do I return shoes?",
            "Send them back within 30 days.",
            at=day("2026-03-02"),
            persona="shop_support",
            model="m1",
            ttft_ms=5,
            from_cache=True,
            knowledge="shop",
            sources=2,
        ),
        "tutor": turn(
            store,
            BO,
            c,
            "什么是勾股定理？",
            "直角三角形两条直角边的平方和等于斜边的平方。",
            at=day("2026-03-02"),
            persona="tutor",
            model="m2",
            rating=1,
            ttft_ms=500,
        ),
    }
    refused(store, "fraud", at=day("2026-03-02"), persona="shop_support")
    refused(store, "fraud", at=day("2026-03-02"), persona="tutor")
    refused(store, "violence", at=day("2026-03-01"), persona="tutor")
    return ids


def test_stats_by_day_persona_and_list(store: Store) -> None:
    ids = seeded(store)
    stats = operator_stats(store.engine, Window(date(2026, 3, 1), date(2026, 3, 3)))
    json.dumps(stats)  # the API's body as it is
    days = {d["day"]: d for d in stats["days"]}
    assert list(days) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert (days["2026-03-01"]["messages"], days["2026-03-01"]["users"]) == (3, 1)
    assert (days["2026-03-02"]["messages"], days["2026-03-02"]["users"]) == (4, 2)
    assert days["2026-03-03"]["messages"] == 0 and days["2026-03-03"]["cache_rate"] is None
    assert (days["2026-03-01"]["ttft_p50_ms"], days["2026-03-01"]["ttft_p95_ms"]) == (300, 900)
    assert days["2026-03-02"]["ttft_p50_ms"] == 500  # the cache hit's 5 ms is not the model's time
    assert days["2026-03-02"]["cache_rate"] == 0.5
    assert stats["refusals"] == [{"category": "fraud", "count": 2}, {"category": "violence", "count": 1}]
    assert stats["ratings"] == [
        {"persona": "shop_support", "model": "m1", "likes": 1, "dislikes": 1},
        {"persona": "tutor", "model": "m2", "likes": 1, "dislikes": 0},
    ]
    totals = stats["totals"]
    assert (totals["messages"], totals["users"], totals["refusals"], totals["likes"], totals["dislikes"]) == (
        7,
        2,
        3,
        2,
        1,
    )
    [disliked] = stats["disliked"]
    assert disliked["message_id"] == ids["disliked"] and disliked["question"] == "And the refund?"
    assert conversation_view(store.engine, disliked["conversation_id"])["messages"][-1]["rating"] == -1
    assert [(q["question"], q["count"], q["knowledge"]) for q in stats["unanswered"]] == [
        ("And the refund?", 1, "shop")
    ]
    assert stats["frequent"][0]["question"] == "How do I return shoes?" and stats["frequent"][0]["count"] == 2
    assert stats["personas"] == ["shop_support", "tutor"]

    tutor = operator_stats(store.engine, Window(date(2026, 3, 1), date(2026, 3, 3), "tutor"))
    assert [d["messages"] for d in tutor["days"]] == [1, 2, 0]
    assert tutor["refusals"] == [{"category": "fraud", "count": 1}, {"category": "violence", "count": 1}]
    assert [r["persona"] for r in tutor["ratings"]] == ["tutor"] and tutor["disliked"] == []
    one_day = operator_stats(store.engine, Window(date(2026, 3, 2), date(2026, 3, 2)))
    assert one_day["totals"]["messages"] == 4 and one_day["disliked"] == []


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 95) == 7
    assert (percentile(list(range(1, 101)), 50), percentile(list(range(1, 101)), 95)) == (50, 95)


def test_sft_has_liked_replies_with_what_came_before(store: Store) -> None:
    ids = seeded(store)
    lines = list(sft_lines(store.engine, ExportFilter()))
    assert {line["message_id"] for line in lines} == {ids["liked"], ids["tutor"]}  # never a disliked one
    shoes = next(line for line in lines if line["message_id"] == ids["liked"])
    assert shoes["messages"] == [
        {"role": "user", "content": "How do I return shoes?"},
        {"role": "assistant", "content": "Send them back within 30 days."},
    ]
    assert (shoes["rating"], shoes["model"], shoes["persona"]) == (1, "m1", "shop_support")
    tutor = list(sft_lines(store.engine, ExportFilter(persona="tutor")))
    assert [line["message_id"] for line in tutor] == [ids["tutor"]]
    assert list(sft_lines(store.engine, ExportFilter(since=day("2026-03-02")))) == tutor


def test_dpo_pairs_only_replies_to_the_same_prompt(store: Store) -> None:
    convs = [store.create_conversation(ANA).id for _ in range(6)]
    at = day("2026-04-01")
    good = turn(store, ANA, convs[0], "Capital of France?", "Paris.", at=at, rating=1)
    bad = turn(store, ANA, convs[1], "Capital of France?", "Lyon.", at=at, rating=-1)
    # the same question after other messages is another prompt: no pair with the two above
    turn(store, ANA, convs[2], "Hello", "Hi!", at=at)
    turn(store, ANA, convs[2], "Capital of France?", "Marseille.", at=at, rating=-1)
    turn(store, ANA, convs[3], "Capital of Spain?", "Madrid.", at=at, rating=1)  # liked alone
    turn(store, ANA, convs[4], "Capital of Italy?", "Milan.", at=at, rating=-1)  # disliked alone
    turn(store, ANA, convs[5], "Capital of Spain?", "Seville.", at=at)  # not rated
    [pair] = list(dpo_lines(store.engine, ExportFilter()))
    assert pair["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert (pair["chosen"], pair["rejected"]) == ("Paris.", "Lyon.")
    assert (pair["chosen_message_id"], pair["rejected_message_id"]) == (good, bad)
    assert list(dpo_lines(store.engine, ExportFilter(since=day("2026-04-02")))) == []
    assert list(dpo_lines(store.engine, ExportFilter(persona="tutor"))) == []


def test_deleted_users_leave_exports_and_lists(store: Store) -> None:
    ids = seeded(store)
    store.delete_all(BO)
    assert ids["tutor"] not in {line["message_id"] for line in sft_lines(store.engine, ExportFilter())}
    stats = operator_stats(store.engine, Window(date(2026, 3, 1), date(2026, 3, 3)))
    assert [r["persona"] for r in stats["ratings"]] == ["shop_support"]
    assert all("勾股" not in q["question"] for q in stats["frequent"])
    conversation = stats["disliked"][0]["conversation_id"]
    store.delete(ANA, conversation)
    assert conversation_view(store.engine, conversation) is None
    assert list(sft_lines(store.engine, ExportFilter())) == []


def test_every_export_is_logged(store: Store) -> None:
    entry = log_export(
        store.engine, operator="user:admin (127.0.0.1)", fmt="sft", selected=ExportFilter(persona="tutor")
    )
    assert recent_exports(store.engine)[0]["rows"] == 0  # kept before the first line goes out
    finish_export(store.engine, entry, rows=12, complete=True)
    [kept] = recent_exports(store.engine)
    assert (kept["operator"], kept["format"], kept["rows"], kept["complete"]) == (
        "user:admin (127.0.0.1)",
        "sft",
        12,
        True,
    )
    assert kept["filters"] == {"since": None, "persona": "tutor"}


REPLIES = 3000
REPLY = "word " * 200  # 1 KB a reply: the export is over 5 MB


def many_liked(store: Store) -> None:
    """``REPLIES`` liked replies in conversations of two turns, written in bulk."""
    now = utcnow()
    with store.engine.begin() as c:
        c.execute(sa.insert(owners).values(id=ANA, created_at=now))
        c.execute(
            sa.insert(conversations),
            [
                {
                    "id": f"c{n:05d}",
                    "owner_id": ANA,
                    "title": "",
                    "summary": "",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(REPLIES // 2)
            ],
        )
        rows = []
        for n in range(REPLIES):
            conversation = f"c{n // 2:05d}"
            for role, content in (("user", f"question {n}"), ("assistant", REPLY)):
                rows.append(
                    {
                        "conversation_id": conversation,
                        "role": role,
                        "content": content,
                        "status": "complete",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        c.execute(sa.insert(messages), rows)
        replies = c.execute(sa.select(messages.c.id).where(messages.c.role == "assistant")).scalars().all()
        c.execute(sa.insert(feedback), [{"message_id": i, "rating": 1, "created_at": now} for i in replies])


def test_an_export_of_thousands_of_rows_runs_in_constant_memory(tmp_path) -> None:
    """On SQLite: the batches are the same statements on PostgreSQL (the tests above run both)."""
    store = Store.open(f"sqlite:///{tmp_path / 'many.db'}")
    many_liked(store)
    tracemalloc.start()
    try:
        size = count = 0
        for line in sft_lines(store.engine, ExportFilter()):
            size += len(json.dumps(line, ensure_ascii=False))
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    store.close()
    assert count == REPLIES and size > 5_000_000
    # One batch of conversations at a time: a small fraction of what was exported.
    assert peak < size / 10, f"peak {peak} bytes for {size} exported"
