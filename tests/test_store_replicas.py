"""Several replicas on one database (two Store handles), on SQLite and a real
PostgreSQL: a user message sent again with the same key is stored once, also when two replicas
store it at the same moment; a reply whose replica is gone is marked interrupted by a live
replica, without any restart (issue 32)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from pg import DATABASES, empty_database

from chat.errors import InvalidRequest
from chat.messages import Message
from chat.store import Store
from chat.store.tables import messages, utcnow

ALICE, BOB = "user:alice", "user:bob"
T = TypeVar("T")
KEY = "6f1c2a9e-7d4b-4f0e-9c3a-0b5d8e2f1a47"  # a client's id for one message (a UUID, say)


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return empty_database(request, tmp_path)


@pytest.fixture
def replicas(url: str) -> Iterator[tuple[Store, Store]]:
    """Two replicas' stores on one database."""
    a, b = Store.open(url), Store.open(url)
    yield a, b
    a.close()
    b.close()


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run ``calls`` in threads released at the same moment; their results."""
    started, results = threading.Barrier(len(calls)), []

    def run(call: Callable[[], T]) -> None:
        started.wait()
        results.append(call())

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == len(calls)
    return results


def rows(store: Store, owner: str, conversation_id: str) -> list[tuple[str, str, str]]:
    found = store.get_conversation(owner, conversation_id)
    assert found is not None
    return [(m.role, m.content, m.status) for m in found.messages]


def test_a_resent_message_is_stored_once_and_its_turn_continues(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    conv = a.create_conversation(ALICE)
    first = a.start_turn(ALICE, conv.id, "Can I return a jacket?", key=KEY, interval=0)
    first.writer.append("Yes, within")  # then replica A dies: the user never saw a word
    assert not first.resent
    again = b.start_turn(ALICE, conv.id, "Can I return a jacket?", key=KEY)  # sent again, to B
    assert again.resent
    # A is dead but its lease has not run out yet: B writes a reply row of its own.
    with again.writer as writer:
        writer.append("Yes, within 30 days.")
    a.mark_interrupted(now=utcnow() + timedelta(minutes=1))  # A's lease ran out
    assert rows(b, ALICE, conv.id) == [
        ("user", "Can I return a jacket?", "complete"),
        ("assistant", "Yes, within", "interrupted"),
        ("assistant", "Yes, within 30 days.", "complete"),
    ]
    # Sent once more after that: nobody writes the first reply any more, so it is taken over.
    third = a.start_turn(ALICE, conv.id, "Can I return a jacket?", key=KEY)
    assert third.resent and third.writer.message_id == first.writer.message_id
    third.writer.finish("complete", text="Yes: bring the receipt.")
    assert [r for r in rows(a, ALICE, conv.id) if r[0] == "user"] == [
        ("user", "Can I return a jacket?", "complete")
    ]
    assert rows(a, ALICE, conv.id)[1] == ("assistant", "Yes: bring the receipt.", "complete")
    # The same words without a key, or with another key, are a new message: stored again.
    a.start_turn(ALICE, conv.id, "Can I return a jacket?").writer.finish("complete", text="Yes.")
    a.start_turn(ALICE, conv.id, "Can I return a jacket?", key="another").writer.finish("complete")
    assert [r[1] for r in rows(a, ALICE, conv.id) if r[0] == "user"] == ["Can I return a jacket?"] * 3


def test_a_key_is_the_owners_own_and_checked(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    mine, theirs = a.create_conversation(ALICE), a.create_conversation(BOB)
    a.start_turn(ALICE, mine.id, "hello", key=KEY).writer.finish("complete", text="hi")
    b.start_turn(BOB, theirs.id, "hello", key=KEY).writer.finish("complete", text="hi")  # no clash
    assert len(rows(b, BOB, theirs.id)) == 2
    with pytest.raises(InvalidRequest, match="at most 64"):
        a.start_turn(ALICE, mine.id, "hello", key="k" * 65)
    with pytest.raises(InvalidRequest) as reused:  # the key names another message: refused
        b.start_turn(ALICE, mine.id, "goodbye", key=KEY)
    assert "幂等键" in reused.value.user_message("zh")
    assert [r[1] for r in rows(a, ALICE, mine.id)] == ["hello", "hi"]


def test_the_same_message_to_two_replicas_at_once_is_stored_once(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    conv = a.create_conversation(ALICE)
    a.start_turn(ALICE, conv.id, "first", key="k0").writer.finish("complete", text="one")
    for round_ in range(5):
        key = f"race-{round_}"
        turns = at_once(
            [lambda s=s, k=key: s.start_turn(ALICE, conv.id, f"question {k}", key=k) for s in (a, b)]
        )
        assert sorted(t.resent for t in turns) == [False, True]
        ids = {t.writer.message_id for t in turns}
        assert len(ids) == 2  # both replies live: each writes its own row, neither overwrites
        for turn in turns:
            turn.writer.finish("complete", text=f"answer {key}")
    users = [r[1] for r in rows(a, ALICE, conv.id) if r[0] == "user"]
    assert users == ["first"] + [f"question race-{n}" for n in range(5)]


def test_a_resend_waiting_on_another_replicas_uncommitted_copy_is_stored_once(
    replicas: tuple[Store, Store],
) -> None:
    """The race's narrow case made certain: replica A's insert of the message is not committed
    yet when B stores the same key. PostgreSQL holds B on the unique index and then refuses its
    copy; SQLite holds B on the write lock, after which B finds the copy."""
    a, b = replicas
    conv = a.create_conversation(ALICE)
    turns = []
    with a.engine.connect() as c:
        transaction = c.begin()
        now = utcnow()
        c.execute(
            sa.insert(messages).values(
                conversation_id=conv.id,
                role="user",
                content="hello?",
                status="complete",
                created_at=now,
                updated_at=now,
                client_key=KEY,
            )
        )
        sender = threading.Thread(
            target=lambda: turns.append(b.start_turn(ALICE, conv.id, "hello?", key=KEY))
        )
        sender.start()
        if c.dialect.name == "postgresql":  # wait until B waits on A's row
            waiting = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            deadline = time.monotonic() + 30
            while not c.execute(waiting).scalar() and time.monotonic() < deadline:
                time.sleep(0.02)
        transaction.commit()
    sender.join(timeout=60)
    assert turns and turns[0].resent
    turns[0].writer.finish("complete", text="Hello!")
    assert rows(b, ALICE, conv.id) == [("user", "hello?", "complete"), ("assistant", "Hello!", "complete")]


def test_a_first_message_sent_again_continues_its_conversation(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    opened, created = a.conversation_for(ALICE, KEY)
    assert created
    a.start_turn(ALICE, opened.id, "Hi, are you open today?", key=KEY)  # then A dies
    found, created = b.conversation_for(ALICE, KEY)
    assert (found.id, created) == (opened.id, False)
    assert b.start_turn(ALICE, found.id, "Hi, are you open today?", key=KEY).resent
    assert len(b.list_conversations(ALICE)) == 1
    other, _ = b.conversation_for(BOB, KEY)  # another owner's key opens another conversation
    assert other.id != opened.id and b.get_conversation(ALICE, other.id) is None
    both = at_once([lambda s=s: s.conversation_for(ALICE, "sent-twice-at-once") for s in (a, b)])
    assert sorted(created for _, created in both) == [False, True]
    assert len({info.id for info, _ in both}) == 1


def test_a_dead_replicas_reply_is_marked_interrupted_by_a_live_one(url: str) -> None:
    live = Store.open(url, lease_seconds=1.0)  # renews and sweeps every third of a second
    dead = Store.open(url, lease_seconds=1.0)
    try:
        conv = live.create_conversation(ALICE)
        waiting = live.start_turn(ALICE, conv.id, "still there?")  # no token yet: kept by renewal
        gone = dead.start_turn(ALICE, conv.id, "tell me a story", interval=0).writer
        gone.append("Once upon")
        dead.leases.renew()
        dead._closing.set()  # the process stops renewing, as a killed one does; nothing restarts
        deadline = time.monotonic() + 30
        while rows(live, ALICE, conv.id)[3][2] == "streaming" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rows(live, ALICE, conv.id)[1:] == [
            ("assistant", "", "streaming"),  # the live replica's reply, renewed while it waits
            ("user", "tell me a story", "complete"),
            ("assistant", "Once upon", "interrupted"),
        ]
        waiting.writer.finish("complete", text="Yes.")
        assert live.history(ALICE, conv.id) == [
            Message("user", "still there?"),
            Message("assistant", "Yes."),
            Message("user", "tell me a story"),
            Message("assistant", "Once upon"),
        ]
    finally:
        live.close()
        dead.close()
