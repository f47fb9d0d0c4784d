"""The conversation store: every read and write of conversations, messages, ratings and profiles.

Synchronous and thread-safe (the engine runs in worker threads): each call is one short
transaction on a pooled connection. Every call takes the owner, and every query is filtered by
it, so one owner can never list, read, change or delete another's data; another owner's
conversation id behaves exactly like an id that does not exist.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from chat.errors import InvalidRequest
from chat.messages import ROLES, Message
from chat.store.engine import create_engine, migrate, parse_url, safe_url, translate_errors
from chat.store.errors import ConversationNotFound
from chat.store.models import (
    ID_MAX,
    OWNER_MAX,
    TITLE_MAX,
    ConversationRow,
    FeedbackRow,
    MessageRow,
    OwnerRow,
    ProfileRow,
    utcnow,
)
from chat.store.records import STATUSES, Conversation, ConversationInfo, Profile, StoredMessage
from chat.store.writer import ReplyWriter

AUTO_TITLE_CHARS = 60
MAX_LIST = 1000
EXPORT_FORMAT = "chat-export/1"
PROFILE_LIMITS = {"display_name": 100, "language": 16, "persona": 100, "notes": 4000}


class Store:
    """Conversations kept in SQLite or PostgreSQL. Build with ``Store.open(url)``.

    >>> store = Store.open("sqlite:///data/chat.db", retention_days=30)
    >>> conv = store.create_conversation("user:alice")
    >>> store.add_message("user:alice", conv.id, "user", "Hello")
    """

    def __init__(self, engine: Engine, *, retention_days: int = 0) -> None:
        if retention_days < 0:
            raise InvalidRequest(f"retention_days must be 0 (keep) or more, got {retention_days}")
        self.engine = engine
        self.retention_days = retention_days
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: URL | str, *, retention_days: int = 0, recover: bool = True) -> Store:
        """Connect (``postgresql://`` means psycopg 3), migrate from whatever version (or nothing) is there, and, unless ``recover``
        is false, mark replies left ``streaming`` by a dead process as interrupted."""
        engine = create_engine(parse_url(url) if isinstance(url, str) else url)
        migrate(engine)
        store = cls(engine, retention_days=retention_days)
        if recover:
            store.mark_interrupted()
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({safe_url(self.engine.url)!r}, retention_days={self.retention_days})"

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with translate_errors(self.engine.url), self._sessions.begin() as session:
            yield session

    # --- conversations ------------------------------------------------------------------------

    def create_conversation(self, owner: str, *, title: str = "") -> ConversationInfo:
        """A new, empty conversation with an unguessable id (192 random bits)."""
        _check_owner(owner)
        now = utcnow()
        row = ConversationRow(
            id=secrets.token_urlsafe(24),
            owner_id=owner,
            title=_check_title(title),
            summary="",
            created_at=now,
            updated_at=now,
        )
        with self._tx() as s:
            _ensure_owner(s, owner)
            s.add(row)
        return _info(row)

    def list_conversations(
        self, owner: str, *, search: str | None = None, limit: int = 100
    ) -> list[ConversationInfo]:
        """The owner's conversations, most recently active first; ``search`` matches the title or
        any message, ignoring case."""
        _check_owner(owner)
        limit = max(1, min(int(limit), MAX_LIST))
        query = sa.select(ConversationRow).where(ConversationRow.owner_id == owner)
        if search:
            in_messages = (
                sa.select(MessageRow.id)
                .where(MessageRow.conversation_id == ConversationRow.id)
                .where(MessageRow.content.icontains(search, autoescape=True))
                .exists()
            )
            query = query.where(sa.or_(ConversationRow.title.icontains(search, autoescape=True), in_messages))
        query = query.order_by(ConversationRow.updated_at.desc(), ConversationRow.id).limit(limit)
        with self._tx() as s:
            return [_info(row) for row in s.scalars(query)]

    def get_conversation(self, owner: str, conversation_id: str) -> Conversation | None:
        """The conversation with all its messages, or None (also for another owner's id)."""
        _check_owner(owner)
        with self._tx() as s:
            row = _owned(s, owner, conversation_id)
            if row is None:
                return None
            return _conversation(row, _messages(s, [row.id]).get(row.id, []))

    def rename(self, owner: str, conversation_id: str, title: str) -> bool:
        _check_owner(owner)
        title = _check_title(title)
        with self._tx() as s:
            row = _owned(s, owner, conversation_id)
            if row is not None:
                row.title = title
            return row is not None

    def set_summary(self, owner: str, conversation_id: str, summary: str) -> bool:
        """Keep the summary of turns that no longer fit the context."""
        _check_owner(owner)
        with self._tx() as s:
            row = _owned(s, owner, conversation_id)
            if row is not None:
                row.summary = summary
            return row is not None

    def delete(self, owner: str, conversation_id: str) -> bool:
        """Delete one conversation with its messages and ratings. False when there was none."""
        _check_owner(owner)
        with self._tx() as s:
            result = s.execute(
                sa.delete(ConversationRow).where(
                    ConversationRow.id == conversation_id, ConversationRow.owner_id == owner
                )
            )
            return result.rowcount > 0

    def delete_all(self, owner: str) -> int:
        """Delete everything kept about the owner (conversations, ratings, profile). Returns the
        number of conversations deleted."""
        _check_owner(owner)
        with self._tx() as s:
            count = s.execute(sa.delete(ConversationRow).where(ConversationRow.owner_id == owner)).rowcount
            s.execute(sa.delete(OwnerRow).where(OwnerRow.id == owner))
            return count

    def export_all(self, owner: str) -> dict[str, Any]:
        """Everything kept about the owner, as a JSON-able dict ("export all my data")."""
        _check_owner(owner)
        with self._tx() as s:
            rows = list(
                s.scalars(
                    sa.select(ConversationRow)
                    .where(ConversationRow.owner_id == owner)
                    .order_by(ConversationRow.created_at, ConversationRow.id)
                )
            )
            messages = _messages(s, [row.id for row in rows])
            profile = s.get(ProfileRow, owner)
        return {
            "format": EXPORT_FORMAT,
            "exported_at": utcnow().isoformat(),
            "profile": _profile(profile).to_dict() if profile else None,
            "conversations": [_conversation(row, messages.get(row.id, [])).to_dict() for row in rows],
        }

    # --- messages -----------------------------------------------------------------------------

    def add_message(
        self, owner: str, conversation_id: str, role: str, content: str, *, status: str = "complete"
    ) -> int:
        """Store one message now (the user's, before generation starts). Returns its id. The first
        user message titles an untitled conversation."""
        _check_owner(owner)
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if not isinstance(content, str):
            raise InvalidRequest(f"message content must be text, got {type(content).__name__}")
        with self._tx() as s:
            conversation = _owned(s, owner, conversation_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id=conversation_id)
            now = utcnow()
            row = MessageRow(
                conversation_id=conversation.id,
                role=role,
                content=content,
                status=status,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            conversation.updated_at = now
            if role == "user" and not conversation.title:
                conversation.title = _auto_title(content)
            s.flush()
            return row.id

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
        return ReplyWriter(self._tx, message_id, interval=interval, clock=clock)

    def history(self, owner: str, conversation_id: str) -> list[Message]:
        """The conversation as engine input, oldest first. Replies that never produced text are
        left out; stopped and interrupted ones keep the text the user saw."""
        conversation = self.get_conversation(owner, conversation_id)
        if conversation is None:
            raise ConversationNotFound(conversation_id=conversation_id)
        return [m.to_message() for m in conversation.messages if m.content or m.role == "user"]

    def mark_interrupted(self) -> int:
        """Mark replies left ``streaming`` as interrupted (run at start-up). With several replicas
        a reply that is still alive elsewhere is set back to ``streaming`` by its writer's next
        write, within a second."""
        with self._tx() as s:
            return s.execute(
                sa.update(MessageRow).where(MessageRow.status == "streaming").values(status="interrupted")
            ).rowcount

    def set_feedback(self, owner: str, message_id: int, rating: int | None) -> bool:
        """Like (+1), dislike (-1) or clear (None) an assistant message of the owner's."""
        _check_owner(owner)
        if rating not in (1, -1, None):
            raise InvalidRequest(f"rating must be 1, -1 or null, got {rating!r}")
        with self._tx() as s:
            found = s.scalar(
                sa.select(MessageRow.id)
                .join(ConversationRow, ConversationRow.id == MessageRow.conversation_id)
                .where(MessageRow.id == message_id, ConversationRow.owner_id == owner)
                .where(MessageRow.role == "assistant")
            )
            if found is None:
                return False
            s.execute(sa.delete(FeedbackRow).where(FeedbackRow.message_id == message_id))
            if rating is not None:
                s.add(FeedbackRow(message_id=message_id, rating=rating, created_at=utcnow()))
            return True

    # --- profiles -----------------------------------------------------------------------------

    def get_profile(self, owner: str) -> Profile | None:
        _check_owner(owner)
        with self._tx() as s:
            row = s.get(ProfileRow, owner)
            return _profile(row) if row else None

    def save_profile(self, owner: str, profile: Profile) -> None:
        _check_owner(owner)
        for name, limit in PROFILE_LIMITS.items():
            if len(getattr(profile, name)) > limit:
                raise InvalidRequest(f"{name} must be at most {limit} characters")
        with self._tx() as s:
            _ensure_owner(s, owner)
            row = s.get(ProfileRow, owner) or ProfileRow(owner_id=owner)
            for key, value in profile.to_dict().items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            s.add(row)

    # --- retention ----------------------------------------------------------------------------

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete conversations idle for more than ``retention_days`` (0: keep everything), and
        owners left with nothing. Returns the number of conversations deleted."""
        if not self.retention_days:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.retention_days)
        with self._tx() as s:
            count = s.execute(sa.delete(ConversationRow).where(ConversationRow.updated_at < cutoff)).rowcount
            s.execute(
                sa.delete(OwnerRow).where(
                    OwnerRow.created_at < cutoff,
                    ~sa.select(ConversationRow.id).where(ConversationRow.owner_id == OwnerRow.id).exists(),
                    ~sa.select(ProfileRow.owner_id).where(ProfileRow.owner_id == OwnerRow.id).exists(),
                )
            )
            return count


# --- helpers ------------------------------------------------------------------------------------


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not 0 < len(owner) <= OWNER_MAX:
        raise InvalidRequest(f"owner must be text of 1 to {OWNER_MAX} characters")


def _check_title(title: str) -> str:
    if not isinstance(title, str):
        raise InvalidRequest(f"title must be text, got {type(title).__name__}")
    title = " ".join(title.split())
    if len(title) > TITLE_MAX:
        raise InvalidRequest(f"title must be at most {TITLE_MAX} characters, got {len(title)}")
    return title


def _auto_title(content: str) -> str:
    text = " ".join(content.split())
    return text if len(text) <= AUTO_TITLE_CHARS else text[: AUTO_TITLE_CHARS - 1] + "…"


def _ensure_owner(s: Session, owner: str) -> None:
    """Create the owner row once; a concurrent creator (another thread or replica) is fine."""
    if s.get(OwnerRow, owner) is not None:
        return
    try:
        with s.begin_nested():
            s.add(OwnerRow(id=owner, created_at=utcnow()))
    except IntegrityError:
        pass  # created meanwhile by another writer: exactly what we wanted


def _owned(s: Session, owner: str, conversation_id: str) -> ConversationRow | None:
    if not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= ID_MAX:
        return None
    row = s.get(ConversationRow, conversation_id)
    return row if row is not None and row.owner_id == owner else None


def _messages(s: Session, conversation_ids: list[str]) -> dict[str, list[StoredMessage]]:
    if not conversation_ids:
        return {}
    query = (
        sa.select(MessageRow, FeedbackRow.rating)
        .outerjoin(FeedbackRow, FeedbackRow.message_id == MessageRow.id)
        .where(MessageRow.conversation_id.in_(conversation_ids))
        .order_by(MessageRow.conversation_id, MessageRow.id)
    )
    grouped: dict[str, list[StoredMessage]] = {}
    for row, rating in s.execute(query):
        grouped.setdefault(row.conversation_id, []).append(
            StoredMessage(
                id=row.id,
                role=row.role,  # type: ignore[arg-type]  # checked on the way in
                content=row.content,
                status=row.status,  # type: ignore[arg-type]
                created_at=row.created_at,
                updated_at=row.updated_at,
                rating=rating,
            )
        )
    return grouped


def _info(row: ConversationRow) -> ConversationInfo:
    return ConversationInfo(id=row.id, title=row.title, created_at=row.created_at, updated_at=row.updated_at)


def _conversation(row: ConversationRow, messages: list[StoredMessage]) -> Conversation:
    return Conversation(
        id=row.id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        summary=row.summary,
        messages=tuple(messages),
    )


def _profile(row: ProfileRow) -> Profile:
    return Profile(
        display_name=row.display_name,
        language=row.language,
        persona=row.persona,
        notes=row.notes,
        opt_in=row.opt_in,
    )
