"""Who is still writing a streaming reply, so that a replica that dies mid-reply has its replies
marked ``interrupted`` by the replicas still alive, not only when it starts again.

Each streaming reply row names its writer (``replica``: host, process and a random part) and
carries a lease (``lease_until``). The writer's own writes extend it, and every store renews the
leases of the writers it still holds every ``lease / 3`` seconds in one statement (a reply still
waiting for its first token writes nothing by itself). The same thread, on every replica, marks
the replies whose lease ran out ``interrupted``: their writer missed two renewals or more, so
its process is gone (or stalled: a reply wrongly marked is set back to ``streaming`` by its
writer's next write). A reply left by a process older than the leases (``lease_until`` NULL)
counts as gone once it has not been written for a lease's length.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa

from chat.errors import ChatError, InvalidRequest
from chat.settings import REPLY_LEASE_SECONDS
from chat.store.tables import REPLICA_MAX, messages, utcnow

log = logging.getLogger(__name__)

# A writer's lease (CHAT_REPLY_LEASE): three renewal periods, so one missed renewal is harmless.
LEASE_SECONDS = REPLY_LEASE_SECONDS
_RENEW = (
    sa.update(messages)
    .where(messages.c.id.in_(sa.bindparam("ids", expanding=True)), messages.c.status == "streaming")
    .values(lease_until=sa.bindparam("until"))
)
_SWEEP = (
    sa.update(messages)
    .where(
        messages.c.status == "streaming",
        sa.or_(
            messages.c.lease_until < sa.bindparam("now"),
            messages.c.lease_until.is_(None) & (messages.c.updated_at < sa.bindparam("stale")),
        ),
    )
    .values(status="interrupted", lease_until=None)
)


def replica_name() -> str:
    """This store's name in the reply rows it writes: unique among live processes, readable by an
    operator (which host and process wrote a reply)."""
    suffix = f":{os.getpid()}:{secrets.token_hex(3)}"
    return socket.gethostname()[: REPLICA_MAX - len(suffix)] + suffix


class Held(Protocol):
    """What a lease is held for: a reply being written (``chat.store.writer.ReplyWriter``)."""

    @property
    def message_id(self) -> int: ...

    @property
    def status(self) -> str: ...


class Leases:
    """The leases of one store's writers (one per replica process, or more in tests)."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[sa.Connection]],
        seconds: float = LEASE_SECONDS,
    ) -> None:
        if not seconds > 0:
            raise InvalidRequest(f"CHAT_REPLY_LEASE must be more than 0 seconds, got {seconds:g}")
        self.name = replica_name()
        self.seconds = seconds
        self._transaction = transaction
        self._writers: weakref.WeakSet[Held] = weakref.WeakSet()  # a dropped one lapses
        self._lock = threading.Lock()

    def until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds)

    def hold(self, writer: Held) -> None:
        """Renew ``writer``'s lease while it streams and this process lives."""
        with self._lock:
            self._writers.add(writer)

    def _streaming(self) -> list[int]:
        with self._lock:
            return [w.message_id for w in self._writers if w.status == "streaming"]

    def renew(self, now: datetime | None = None) -> int:
        """Extend the leases of the replies this store is still writing. Returns how many."""
        ids = self._streaming()
        if not ids:
            return 0
        with self._transaction() as c:
            return c.execute(_RENEW, {"ids": ids, "until": self.until(now or utcnow())}).rowcount

    def sweep(self, now: datetime | None = None) -> int:
        """Mark replies whose writer's lease ran out by ``now`` interrupted. Returns how many."""
        now = now or utcnow()
        stale = now - timedelta(seconds=self.seconds)
        with self._transaction() as c:
            marked = c.execute(_SWEEP, {"now": now, "stale": stale}).rowcount
        if marked:
            log.info("marked %d replies interrupted: the replica writing them is gone", marked)
        return marked

    def keep(self, closing: threading.Event, *, sweep: bool = True) -> threading.Thread:
        """Renew (and, with ``sweep``, sweep) every ``seconds / 3`` in a daemon thread until
        ``closing`` is set. The thread holds the leases weakly: a store dropped without
        ``close()`` stops it too."""
        every = self.seconds / 3
        ref = weakref.ref(self)

        def run() -> None:
            while not closing.wait(every):
                leases = ref()
                if leases is None:
                    return
                for step in _steps(leases, sweep):
                    try:
                        step()
                    except ChatError:
                        log.warning("reply leases: %s failed; trying again in %g s", step.__name__, every)
                    except Exception:  # noqa: BLE001 - the thread outlives one bad round
                        log.exception("reply leases: %s failed", step.__name__)
                del leases

        thread = threading.Thread(target=run, name="store-leases", daemon=True)
        thread.start()
        return thread


def _steps(leases: Leases, sweep: bool) -> Iterator[Callable[[], int]]:
    yield leases.renew
    if sweep:
        yield leases.sweep
