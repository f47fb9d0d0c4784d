"""The store's statements and row helpers, each filtered by owner so that no query of the store
can reach another owner's data (``chat.store.store`` runs them)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chat.errors import InvalidRequest
from chat.store.errors import ConversationNotFound
from chat.store.records import Conversation, Profile, StoredMessage
from chat.store.tables import (
    ID_MAX,
    KEY_MAX,
    OWNER_MAX,
    TITLE_MAX,
    UTCDateTime,
    conversations,
    feedback,
    messages,
    owners,
    profiles,
    utcnow,
)

AUTO_TITLE_CHARS = 60

# A turn's statements, built once: SQLAlchemy then skips rebuilding and re-keying them per call.
OWNED = (conversations.c.id == sa.bindparam("conversation_id")) & (
    conversations.c.owner_id == sa.bindparam("owner")
)
TOUCH = (
    sa.update(conversations)
    .where(OWNED)
    .values(
        updated_at=sa.bindparam("now"),
        title=sa.case((conversations.c.title == "", sa.bindparam("auto_title")), else_=conversations.c.title),
    )
)
PROFILE_FIELDS = ("display_name", "language", "persona", "notes", "opt_in")
# The touch also reads the turn's notes: the summary, and the profile's fields (NULL without one).
TOUCH_AND_READ = TOUCH.returning(
    conversations.c.summary,
    *(
        sa.select(profiles.c[name]).where(profiles.c.owner_id == sa.bindparam("owner")).scalar_subquery()
        for name in PROFILE_FIELDS
    ),
)
NOW = sa.bindparam("now", type_=UTCDateTime())
# A streaming reply's writer and its lease (``chat.store.leases``); NULL for a finished message.
REPLICA = sa.bindparam("replica", type_=sa.String())
UNTIL = sa.bindparam("until", type_=UTCDateTime())
NO_TIME = sa.cast(sa.null(), UTCDateTime())
MESSAGE_COLUMNS = [
    "conversation_id",
    "role",
    "content",
    "status",
    "created_at",
    "updated_at",
    "client_key",
    "replica",
    "lease_until",
]
INSERT_OWNED = (
    sa.insert(messages)
    .from_select(
        MESSAGE_COLUMNS,
        sa.select(
            conversations.c.id,
            sa.bindparam("role", type_=sa.String()),
            sa.bindparam("content", type_=sa.Text()),
            sa.bindparam("status", type_=sa.String()),
            NOW,
            NOW,
            sa.null(),
            REPLICA,
            UNTIL,
        ).where(OWNED),
    )
    .returning(messages.c.id)
)
# No message of the conversation carries the client's key yet (none does without a key: NULL
# equals nothing). Exact on SQLite, where the turn's transaction holds the write lock; on
# PostgreSQL two replicas may both pass it, and the unique index refuses the second insert.
NOT_SENT = ~(
    sa.select(messages.c.id)
    .where(messages.c.conversation_id == sa.bindparam("conversation_id"))
    .where(messages.c.client_key == sa.bindparam("key", type_=sa.String()))
    .exists()
)
# The user's message and the reply's ``streaming`` row in one statement; ids follow row order, so
# the reply's is the larger. Neither row is written for a message already stored under its key.
START_TURN = (
    sa.insert(messages)
    .from_select(
        MESSAGE_COLUMNS,
        sa.union_all(
            sa.select(
                conversations.c.id,
                sa.literal("user"),
                sa.bindparam("content", type_=sa.Text()),
                sa.literal("complete"),
                NOW,
                NOW,
                sa.bindparam("key", type_=sa.String()),
                sa.null(),
                NO_TIME,
            ).where(OWNED & NOT_SENT),
            sa.select(
                conversations.c.id,
                sa.literal("assistant"),
                sa.literal(""),
                sa.literal("streaming"),
                NOW,
                NOW,
                sa.null(),
                REPLICA,
                UNTIL,
            ).where(OWNED & NOT_SENT),
        ),
    )
    .returning(messages.c.id)
)


def check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not 0 < len(owner) <= OWNER_MAX:
        raise InvalidRequest(f"owner must be text of 1 to {OWNER_MAX} characters")


def owned_message(owner: str, conversation_id: str, content: object) -> dict[str, Any]:
    """The checked parameters every message statement shares; a bad id is simply not found."""
    check_owner(owner)
    if not isinstance(content, str):
        raise InvalidRequest(f"message content must be text, got {type(content).__name__}")
    if not valid_id(conversation_id):
        raise ConversationNotFound(conversation_id=conversation_id)
    return {"owner": owner, "conversation_id": conversation_id, "now": utcnow()}


def check_key(key: str | None) -> str | None:
    """A client's key for its message: text of at most ``KEY_MAX`` characters; "" means none."""
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        raise InvalidRequest(f"the message key must be text, got {type(key).__name__}")
    if len(key) > KEY_MAX:
        raise InvalidRequest(f"the message key must be at most {KEY_MAX} characters, got {len(key)}")
    return key


def check_title(title: str) -> str:
    if not isinstance(title, str):
        raise InvalidRequest(f"title must be text, got {type(title).__name__}")
    title = " ".join(title.split())
    if len(title) > TITLE_MAX:
        raise InvalidRequest(f"title must be at most {TITLE_MAX} characters, got {len(title)}")
    return title


def auto_title(content: str) -> str:
    text = " ".join(content.split())
    return text if len(text) <= AUTO_TITLE_CHARS else text[: AUTO_TITLE_CHARS - 1] + "…"


def valid_id(conversation_id: object) -> bool:
    return isinstance(conversation_id, str) and 0 < len(conversation_id) <= ID_MAX


def ensure_owner(c: sa.Connection, owner: str) -> None:
    """Create the owner row once; a concurrent creator (another thread or replica) is fine."""
    if c.execute(sa.select(owners.c.id).where(owners.c.id == owner)).first() is not None:
        return
    try:
        with c.begin_nested():
            c.execute(sa.insert(owners).values(id=owner, created_at=utcnow()))
    except IntegrityError:
        pass  # created meanwhile by another writer: exactly what we wanted


def where_owned(statement: Any, owner: str, conversation_id: str) -> Any:
    return statement.where(conversations.c.id == conversation_id, conversations.c.owner_id == owner)


def conversation_columns() -> sa.Select[Any]:
    conv = conversations.c
    return sa.select(conv.id, conv.title, conv.created_at, conv.updated_at, conv.summary)


def owned_select(owner: str, conversation_id: str) -> sa.Select[Any]:
    return where_owned(conversation_columns(), owner, conversation_id)


def stored_messages(c: sa.Connection, conversation_ids: list[str]) -> dict[str, list[StoredMessage]]:
    if not conversation_ids:
        return {}
    m = messages.c
    query = (
        sa.select(
            m.conversation_id,
            m.id,
            m.role,
            m.content,
            m.status,
            m.created_at,
            m.updated_at,
            feedback.c.rating,
            m.sources,
            m.tool_calls,
        )
        .select_from(messages.outerjoin(feedback, feedback.c.message_id == m.id))
        .where(m.conversation_id.in_(conversation_ids))
        .order_by(m.conversation_id, m.id)
    )
    grouped: dict[str, list[StoredMessage]] = {}
    for conversation_id, *fields, sources, tool_calls in c.execute(query):
        message = StoredMessage(*fields, sources=tuple(sources or ()), tool_calls=tuple(tool_calls or ()))
        grouped.setdefault(conversation_id, []).append(message)
    return grouped


def conversation_record(row: sa.Row[Any], stored: list[StoredMessage]) -> Conversation:
    return Conversation(
        id=row.id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        summary=row.summary,
        messages=tuple(stored),
    )


def profile_record(c: sa.Connection, owner: str) -> Profile | None:
    row = c.execute(
        sa.select(*(profiles.c[name] for name in PROFILE_FIELDS)).where(profiles.c.owner_id == owner)
    ).first()
    return Profile(**row._asdict()) if row else None
