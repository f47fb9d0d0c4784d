"""The conversation store: every read and write of conversations, messages, ratings and profiles.

Synchronous and thread-safe (the engine runs in worker threads): each call is one short
transaction on a pooled connection, written in SQLAlchemy Core (the ORM's unit of work made a
turn cost several times more). Every call takes the owner and every query is filtered by it, so
one owner can never list, read, change or delete another's data; another owner's conversation
id behaves exactly like an id that does not exist.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError

from chat.errors import InvalidRequest
from chat.messages import ROLES, Message
from chat.store import queries, resend
from chat.store.database import create_engine, migrate, parse_url, safe_url, translate_errors
from chat.store.errors import ConversationNotFound, StoreError
from chat.store.leases import LEASE_SECONDS, Leases
from chat.store.records import STATUSES, Conversation, ConversationInfo, Profile
from chat.store.tables import (
    conversations,
    feedback,
    messages,
    owners,
    profiles,
    utcnow,
)
from chat.store.writer import ReplyWriter

MAX_LIST = 1000
EXPORT_FORMAT = "chat-export/1"
log = logging.getLogger(__name__)

PROFILE_LIMITS = {"display_name": 100, "language": 16, "persona": 100, "notes": 4000}


@dataclass(frozen=True)
class StartedTurn:
    """A stored turn under way: the reply's writer, and the notes its prompt may carry."""

    writer: ReplyWriter
    summary: str  # the stored summary of earlier turns, "" when none
    profile: Profile | None  # the owner's profile, None when they have none
    resent: bool = False  # the message was stored before, under the same key (chat.store.resend)


class Store:
    """Conversations kept in SQLite or PostgreSQL. Build with ``Store.open(url)``.

    >>> store = Store.open("sqlite:///data/chat.db", retention_days=30)
    >>> conv = store.create_conversation("user:alice")
    >>> store.add_message("user:alice", conv.id, "user", "Hello")
    """

    def __init__(
        self, engine: Engine, *, retention_days: int = 0, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        if retention_days < 0:
            raise InvalidRequest(f"retention_days must be 0 (keep) or more, got {retention_days}")
        self.engine = engine
        self.retention_days = retention_days
        self._closing = threading.Event()
        # SQLite keeps its own transactions (BEGIN IMMEDIATE, see engine.py) for every statement.
        postgres = engine.dialect.name == "postgresql"
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT") if postgres else engine
        self.leases = Leases(self._tx, lease_seconds)

    @classmethod
    def open(
        cls,
        url: URL | str,
        *,
        retention_days: int = 0,
        recover: bool = True,
        lease_seconds: float = LEASE_SECONDS,
    ) -> Store:
        """Connect (``postgresql://`` means psycopg 3), migrate from whatever version (or nothing)
        is there, and keep the leases of the replies this store writes until ``close()``. Unless
        ``recover`` is false, also mark replies whose writer is gone (its lease ran out) as
        interrupted, now and every ``lease_seconds / 3`` (``chat.store.leases``)."""
        engine = create_engine(parse_url(url) if isinstance(url, str) else url)
        migrate(engine)
        store = cls(engine, retention_days=retention_days, lease_seconds=lease_seconds)
        if recover:
            store.mark_interrupted()
        store.leases.keep(store._closing, sweep=recover)
        return store

    def close(self) -> None:
        self._closing.set()
        self.engine.dispose()

    def purge_every(self, seconds: float = 3600.0) -> threading.Thread:
        """Run ``purge_expired`` every ``seconds`` in a daemon thread until ``close()``, so a
        server that runs for months still keeps nothing past the retention period."""

        def run() -> None:
            while not self._closing.wait(seconds):
                try:
                    self.purge_expired()
                except StoreError:
                    log.warning("retention purge failed; trying again in %g s", seconds)

        thread = threading.Thread(target=run, name="store-purge", daemon=True)
        thread.start()
        return thread

    def __repr__(self) -> str:
        return f"Store({safe_url(self.engine.url)!r}, retention_days={self.retention_days})"

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with translate_errors(self.engine.url), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def _quick(self) -> Iterator[sa.Connection]:
        """For statements each complete by itself (a turn's writes): on PostgreSQL each commits
        alone, saving the BEGIN and COMMIT round trips; on SQLite they share one transaction."""
        with translate_errors(self.engine.url), self._autocommit.begin() as connection:
            yield connection

    # --- conversations ------------------------------------------------------------------------

    def create_conversation(self, owner: str, *, title: str = "") -> ConversationInfo:
        """A new, empty conversation with an unguessable id (192 random bits)."""
        queries.check_owner(owner)
        now = utcnow()
        info = ConversationInfo(secrets.token_urlsafe(24), queries.check_title(title), now, now)
        with self._tx() as c:
            queries.ensure_owner(c, owner)
            c.execute(sa.insert(conversations).values(**self._new_row(owner, info)))
        return info

    def conversation_for(self, owner: str, key: str) -> tuple[ConversationInfo, bool]:
        """The conversation a first message sent with ``key`` opens, and whether it was created
        now: False when the same message was sent before (a resend, or the same message sent to
        two replicas at once), whose conversation it then continues (``chat.store.resend``)."""
        queries.check_owner(owner)
        checked = queries.check_key(key)
        if checked is None:
            raise InvalidRequest("the message key must not be empty")
        now = utcnow()
        info = ConversationInfo(resend.conversation_id(owner, checked), "", now, now)
        with self._tx() as c:
            queries.ensure_owner(c, owner)
            try:
                with c.begin_nested():
                    c.execute(sa.insert(conversations).values(**self._new_row(owner, info)))
                return info, True
            except IntegrityError:
                pass  # opened before by the same message: continue it
            row = c.execute(queries.owned_select(owner, info.id)).first()
        if row is None:  # pragma: no cover - the id is the owner's by construction
            raise ConversationNotFound(conversation_id=info.id)
        return ConversationInfo(row.id, row.title, row.created_at, row.updated_at), False

    @staticmethod
    def _new_row(owner: str, info: ConversationInfo) -> dict[str, Any]:
        return {
            "id": info.id,
            "owner_id": owner,
            "title": info.title,
            "summary": "",
            "created_at": info.created_at,
            "updated_at": info.updated_at,
        }

    def list_conversations(
        self, owner: str, *, search: str | None = None, limit: int = 100
    ) -> list[ConversationInfo]:
        """The owner's conversations, most recently active first; ``search`` matches the title or
        any message, ignoring case."""
        queries.check_owner(owner)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidRequest(f"limit must be a whole number, got {limit!r}")
        if search is not None and not isinstance(search, str):
            raise InvalidRequest(f"search must be text, got {type(search).__name__}")
        limit = max(1, min(limit, MAX_LIST))
        conv = conversations.c
        query = sa.select(conv.id, conv.title, conv.created_at, conv.updated_at).where(conv.owner_id == owner)
        if search:
            in_messages = (
                sa.select(messages.c.id)
                .where(messages.c.conversation_id == conv.id)
                .where(messages.c.content.icontains(search, autoescape=True))
                .exists()
            )
            query = query.where(sa.or_(conv.title.icontains(search, autoescape=True), in_messages))
        query = query.order_by(conv.updated_at.desc(), conv.id).limit(limit)
        with self._tx() as c:
            return [ConversationInfo(*row) for row in c.execute(query)]

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        """The conversation with all its messages, or None (also for another owner's id)."""
        queries.check_owner(owner)
        if not queries.valid_id(conversation_id):
            return None
        with self._tx() as c:
            row = c.execute(queries.owned_select(owner, conversation_id)).first()
            if row is None:
                return None
            return queries.conversation_record(row, queries.stored_messages(c, [row.id]).get(row.id, []))

    def rename(self, owner: str, conversation_id: str, title: str) -> bool:
        queries.check_owner(owner)
        return self._update_conversation(owner, conversation_id, title=queries.check_title(title))

    def set_summary(self, owner: str, conversation_id: str, summary: str) -> bool:
        """Keep the summary of turns that no longer fit the context."""
        queries.check_owner(owner)
        return self._update_conversation(owner, conversation_id, summary=str(summary))

    def _update_conversation(self, owner: str, conversation_id: str, **values: Any) -> bool:
        if not queries.valid_id(conversation_id):
            return False
        with self._tx() as c:
            return (
                c.execute(
                    queries.where_owned(sa.update(conversations), owner, conversation_id).values(**values)
                ).rowcount
                > 0
            )

    def delete(self, owner: str, conversation_id: str) -> bool:
        """Delete one conversation with its messages and ratings. False when there was none."""
        queries.check_owner(owner)
        if not queries.valid_id(conversation_id):
            return False
        with self._tx() as c:
            return (
                c.execute(queries.where_owned(sa.delete(conversations), owner, conversation_id)).rowcount > 0
            )

    def delete_all(self, owner: str) -> int:
        """Delete everything kept about the owner (conversations, ratings, profile). Returns the
        number of conversations deleted."""
        queries.check_owner(owner)
        with self._tx() as c:
            count = c.execute(sa.delete(conversations).where(conversations.c.owner_id == owner)).rowcount
            c.execute(sa.delete(owners).where(owners.c.id == owner))  # the profile goes with it
            return count

    def export_all(self, owner: str) -> dict[str, Any]:
        """Everything kept about the owner, as a JSON-able dict ("export all my data")."""
        queries.check_owner(owner)
        with self._tx() as c:
            rows = c.execute(
                queries.conversation_columns()
                .where(conversations.c.owner_id == owner)
                .order_by(conversations.c.created_at, conversations.c.id)
            ).all()
            grouped = queries.stored_messages(c, [row.id for row in rows])
            profile = queries.profile_record(c, owner)
        return {
            "format": EXPORT_FORMAT,
            "exported_at": utcnow().isoformat(),
            "profile": profile.to_dict() if profile else None,
            "conversations": [
                queries.conversation_record(row, grouped.get(row.id, [])).to_dict() for row in rows
            ],
        }

    # --- messages -----------------------------------------------------------------------------

    def add_message(
        self, owner: str, conversation_id: str, role: str, content: str, *, status: str = "complete"
    ) -> int:
        """Store one message now (the user's, before generation starts). Returns its id. The first
        user message titles an untitled conversation."""
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        owned = queries.owned_message(owner, conversation_id, content)
        streaming = status == "streaming"  # a reply begun: its writer holds the lease
        lease = {
            "replica": self.leases.name if streaming else None,
            "until": self.leases.until(owned["now"]) if streaming else None,
        }
        with self._quick() as c:
            # A user's message marks the conversation active (and may title it); the statement
            # also checks ownership. A crash before the insert leaves it touched, nothing more.
            if (
                role == "user"
                and not c.execute(
                    queries.TOUCH, {**owned, "auto_title": queries.auto_title(content)}
                ).rowcount
            ):
                raise ConversationNotFound(conversation_id=conversation_id)
            # The insert checks ownership itself, so a reply starts in one statement.
            message_id = c.execute(
                queries.INSERT_OWNED, {**owned, **lease, "role": role, "content": content, "status": status}
            )
            found = message_id.scalar()
        if found is None:
            raise ConversationNotFound(conversation_id=conversation_id)
        return int(found)

    def start_turn(
        self,
        owner: str,
        conversation_id: str,
        content: str,
        *,
        key: str | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> StartedTurn:
        """Store the user's message and start the reply (a ``streaming`` row) in two statements,
        reading on the way what the turn's prompt may carry: the conversation's summary and the
        owner's profile. What the app does before a stored turn's first token, kept to two
        round trips (one transaction on SQLite) because it runs on every turn. A message sent
        again with the same client ``key`` is not stored twice: its stored turn continues
        (``resent``; see ``chat.store.resend``)."""
        owned = queries.owned_message(owner, conversation_id, content)
        params = {
            **owned,
            "content": content,
            "key": queries.check_key(key),
            "replica": self.leases.name,
            "until": self.leases.until(owned["now"]),
        }
        with self._quick() as c:
            notes = c.execute(
                queries.TOUCH_AND_READ, {**owned, "auto_title": queries.auto_title(content)}
            ).first()
            if notes is None:
                raise ConversationNotFound(conversation_id=conversation_id)
            try:
                ids = c.execute(queries.START_TURN, params).scalars().all()
            except IntegrityError:  # PostgreSQL: another replica stored the same key just now
                ids = []
            reply = max(ids) if len(ids) == 2 else None
            if reply is None and params["key"] is not None:
                reply = resend.continue_turn(c, params, owned["now"])
        if reply is None:  # deleted between the two statements (each commits alone on PostgreSQL)
            raise ConversationNotFound(conversation_id=conversation_id)
        summary, *fields = notes
        profile = (
            None if fields[-1] is None else Profile(**dict(zip(queries.PROFILE_FIELDS, fields, strict=True)))
        )
        writer = ReplyWriter(self._quick, reply, interval=interval, clock=clock, leases=self.leases)
        return StartedTurn(writer, summary or "", profile, resent=len(ids) != 2)

    def reply_writer(
        self,
        owner: str,
        conversation_id: str,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> ReplyWriter:
        """Start an assistant reply (stored at once as ``streaming``) and return the writer that
        keeps it up to date as it streams; see ``ReplyWriter``."""
        message_id = self.add_message(owner, conversation_id, "assistant", "", status="streaming")
        return ReplyWriter(self._quick, message_id, interval=interval, clock=clock, leases=self.leases)

    def history(self, owner: str, conversation_id: str) -> list[Message]:
        """The conversation as engine input, oldest first. Replies that never produced text are
        left out; stopped and interrupted ones keep the text the user saw."""
        conversation = self.get_conversation(owner, conversation_id)
        if conversation is None:
            raise ConversationNotFound(conversation_id=conversation_id)
        return [m.to_message() for m in conversation.messages if m.content or m.role == "user"]

    def mark_interrupted(self, now: datetime | None = None) -> int:
        """Mark replies whose writer is gone (its lease ran out by ``now``) as interrupted, on
        whichever replica wrote them; ``Store.open`` does it at start-up and every few seconds.
        Returns how many."""
        return self.leases.sweep(now)

    def set_feedback(self, owner: str, message_id: int, rating: int | None) -> bool:
        """Like (+1), dislike (-1) or clear (None) an assistant message of the owner's."""
        queries.check_owner(owner)
        if rating not in (1, -1, None):
            raise InvalidRequest(f"rating must be 1, -1 or null, got {rating!r}")
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            return False
        with self._tx() as c:
            found = c.execute(
                sa.select(messages.c.id)
                .join(conversations, conversations.c.id == messages.c.conversation_id)
                .where(messages.c.id == message_id, messages.c.role == "assistant")
                .where(conversations.c.owner_id == owner)
            ).first()
            if found is None:
                return False
            c.execute(sa.delete(feedback).where(feedback.c.message_id == message_id))
            if rating is not None:
                c.execute(
                    sa.insert(feedback).values(message_id=message_id, rating=rating, created_at=utcnow())
                )
            return True

    # --- profiles -----------------------------------------------------------------------------

    def get_profile(self, owner: str) -> Profile | None:
        queries.check_owner(owner)
        with self._tx() as c:
            return queries.profile_record(c, owner)

    def save_profile(self, owner: str, profile: Profile) -> None:
        queries.check_owner(owner)
        for name, limit in PROFILE_LIMITS.items():
            if len(getattr(profile, name)) > limit:
                raise InvalidRequest(f"{name} must be at most {limit} characters")
        with self._tx() as c:
            queries.ensure_owner(c, owner)
            c.execute(sa.delete(profiles).where(profiles.c.owner_id == owner))
            c.execute(sa.insert(profiles).values(owner_id=owner, updated_at=utcnow(), **profile.to_dict()))

    # --- retention ----------------------------------------------------------------------------

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete conversations idle for more than ``retention_days`` (0: keep everything), and
        owners left with nothing. Returns the number of conversations deleted."""
        if not self.retention_days:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.retention_days)
        with self._tx() as c:
            count = c.execute(sa.delete(conversations).where(conversations.c.updated_at < cutoff)).rowcount
            c.execute(
                sa.delete(owners).where(
                    owners.c.created_at < cutoff,
                    ~sa.select(conversations.c.id).where(conversations.c.owner_id == owners.c.id).exists(),
                    ~sa.select(profiles.c.owner_id).where(profiles.c.owner_id == owners.c.id).exists(),
                )
            )
            return count
