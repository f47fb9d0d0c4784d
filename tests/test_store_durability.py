"""The store under pressure, on SQLite and a real PostgreSQL: writers in parallel threads, two
replicas (two Store objects) on one database, and a process killed with SIGKILL mid-reply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pg import DATABASES, empty_database

from chat.messages import Message
from chat.store import Store
from chat.store import database as store_engine
from chat.store.tables import utcnow

ROOT = Path(__file__).resolve().parent.parent
ALICE = "user:alice"


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return empty_database(request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    store = Store.open(url)
    yield store
    store.close()


def run_together(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(0..count-1)`` in threads released at the same moment; re-raise any failure."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            work(n)
        except BaseException as exc:  # collected and re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def test_writers_in_parallel_threads(store: Store) -> None:
    shared = store.create_conversation(ALICE)
    own: dict[int, str] = {}

    def work(n: int) -> None:
        owner = "user:newcomer" if n % 2 else f"user:{n}"  # half race to create the same owner
        own[n] = store.create_conversation(owner).id
        for i in range(8):
            store.add_message(owner, own[n], "user", f"q{n}.{i}")
            with store.reply_writer(owner, own[n], interval=0) as writer:
                writer.append(f"a{n}.")
                writer.append(str(i))
            store.add_message(ALICE, shared.id, "user", f"shared {n}.{i}")

    run_together(6, work)
    for n, conv_id in own.items():
        owner = "user:newcomer" if n % 2 else f"user:{n}"
        expected = [
            m for i in range(8) for m in (Message("user", f"q{n}.{i}"), Message("assistant", f"a{n}.{i}"))
        ]
        assert store.history(owner, conv_id) == expected
    assert len(store.list_conversations("user:newcomer")) == 3
    texts = [m.content for m in store.history(ALICE, shared.id)]
    assert sorted(texts) == sorted(f"shared {n}.{i}" for n in range(6) for i in range(8))
    for n in range(6):  # each thread's own messages kept their order
        mine = [t for t in texts if t.startswith(f"shared {n}.")]
        assert mine == [f"shared {n}.{i}" for i in range(8)]


def test_two_replicas_share_one_database(url: str) -> None:
    replicas: list[Store] = []
    run_together(2, lambda n: replicas.append(Store.open(url)))  # both migrate at start-up at once
    a, b = replicas
    try:
        conv = a.create_conversation(ALICE)
        a.add_message(ALICE, conv.id, "user", "asked on replica A")
        with b.reply_writer(ALICE, conv.id) as writer:  # the next request lands on replica B
            writer.append("answered on B")
        assert a.history(ALICE, conv.id) == [
            Message("user", "asked on replica A"),
            Message("assistant", "answered on B"),
        ]

        def work(n: int) -> None:
            replica = replicas[n % 2]
            for i in range(10):
                replica.add_message(ALICE, conv.id, "user", f"r{n}.{i}")

        run_together(4, work)
        assert len(b.history(ALICE, conv.id)) == 2 + 40
        assert [c.id for c in a.list_conversations(ALICE)] == [c.id for c in b.list_conversations(ALICE)]
    finally:
        a.close()
        b.close()


def test_a_replica_restarting_does_not_end_a_live_reply_elsewhere(url: str) -> None:
    a = Store.open(url)
    try:
        conv = a.create_conversation(ALICE)
        writer = a.reply_writer(ALICE, conv.id, interval=0)
        writer.append("still ")
        Store.open(url).close()  # replica B restarts: A's reply is under a lease A still renews
        assert a.get_conversation(ALICE, conv.id).messages[0].status == "streaming"
        a.mark_interrupted(now=utcnow() + timedelta(minutes=1))  # A stalled past its lease
        assert a.get_conversation(ALICE, conv.id).messages[0].status == "interrupted"
        writer.append("going")  # A's next write (within a second) claims the reply back
        assert a.get_conversation(ALICE, conv.id).messages[0].status == "streaming"
        writer.finish()
        assert [(m.content, m.status) for m in a.get_conversation(ALICE, conv.id).messages] == [
            ("still going", "complete")
        ]
    finally:
        a.close()


def test_the_store_outlives_a_database_restart(postgres, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_engine, "PING_AFTER", 0.0)  # check every pooled connection before use
    store = Store.open(postgres.clean_database())
    try:
        conv = store.create_conversation(ALICE)
        store.add_message(ALICE, conv.id, "user", "before")
        postgres.restart()  # the pooled connection is now dead
        store.add_message(ALICE, conv.id, "user", "after")
        assert store.history(ALICE, conv.id) == [Message("user", "before"), Message("user", "after")]
    finally:
        store.close()


CHILD = """
import sys, time
from chat.store import Store
from chat.store import database as store_engine
from chat.store.tables import utcnow

store = Store.open(sys.argv[1], lease_seconds=1.0)
conv = store.create_conversation("user:alice")
store.add_message("user:alice", conv.id, "user", "Tell me a long story, please.")
writer = store.reply_writer("user:alice", conv.id, interval=0.1)
print(conv.id, flush=True)
for i in range(100_000):
    writer.append(f"w{i} ")
    print(i, flush=True)
    time.sleep(0.01)
"""


def test_a_process_killed_mid_reply_keeps_both_messages(url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        conv_id = child.stdout.readline().strip()
        assert conv_id, child.stderr.read()
        for line in child.stdout:  # about half a second of streaming: several writes happened
            if int(line) >= 40:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    before = Store.open(url, recover=False)  # what the dead process left: a reply mid-stream
    try:
        assert before.get_conversation(ALICE, conv_id).messages[1].status == "streaming"
    finally:
        before.close()
    restarted = Store.open(url)  # the restarted server, or any live replica: once the lease ran out
    try:
        deadline = time.monotonic() + 30
        while restarted.mark_interrupted() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        user, reply = restarted.get_conversation(ALICE, conv_id).messages
        assert (user.role, user.content, user.status) == ("user", "Tell me a long story, please.", "complete")
        assert (reply.role, reply.status) == ("assistant", "interrupted")
        words = reply.content.split()
        assert len(words) >= 10, reply.content  # at most ~0.1 s of text was lost
        assert words == [f"w{i}" for i in range(len(words))]
        assert restarted.history(ALICE, conv_id)[1] == Message("assistant", reply.content)
    finally:
        restarted.close()
