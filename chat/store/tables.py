"""The tables, as typed SQLAlchemy 2 models. Migrations (``migrations/versions``) create the same.

    owners 1─* conversations 1─* messages 1─? feedback
    owners 1─? profiles
    knowledge_documents 1─* knowledge_chunks 1─? knowledge_vectors   (chat.knowledge)

An owner is an opaque identity string chosen by the access layer (``user:alice``, ``anon:<id>``,
``api:<name>``). Deleting a conversation or an owner cascades in the database (``ON DELETE
CASCADE``; SQLite enforces it because every connection turns ``foreign_keys`` on).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

OWNER_MAX = 200
TITLE_MAX = 200
ID_MAX = 64
KNOWLEDGE_NAME_MAX = 64
DOCUMENT_NAME_MAX = 255
KEY_MAX = 64  # a client's idempotency key
REPLICA_MAX = 64  # a replica's name: host, process and a random part


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (no time zones) and PostgreSQL alike."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class OwnerRow(Base):
    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(OWNER_MAX), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConversationRow(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_owner_updated", "owner_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(OWNER_MAX), ForeignKey("owners.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(TITLE_MAX), default="")
    # Summary of turns that no longer fit the context (issue 12, point 6); empty until made.
    summary: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation", "conversation_id", "id"),
        # A message its client sent again (the same key) is stored once (chat.store.resend).
        Index("uq_messages_client_key", "conversation_id", "client_key", unique=True),
        # The replies being written now, few at any moment: what the lease sweep reads.
        Index(
            "ix_messages_streaming",
            "lease_until",
            sqlite_where=sa.text("status = 'streaming'"),
            postgresql_where=sa.text("status = 'streaming'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        String(ID_MAX), ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    # complete | streaming | stopped | interrupted (see chat.store.records.STATUSES)
    status: Mapped[str] = mapped_column(String(16), default="complete")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The knowledge-base passages an answer used (issue 13): [{"document", "heading", "text", "score"}]
    sources: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON(), nullable=True, default=None)
    # The operator's tools the app ran for a reply (issue 31): [{"id", "name", "arguments", "result", ...}]
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON(), nullable=True, default=None)
    # The client's own name for a user message (an idempotency key), so that sending it again
    # stores it once; NULL for a message sent without one.
    client_key: Mapped[str | None] = mapped_column(String(KEY_MAX), nullable=True, default=None)
    # A streaming reply's writer (a replica of the app) and how long its lease runs: the writer
    # renews it while it lives, and any replica marks a reply whose lease ran out interrupted
    # (chat.store.leases). NULL once nobody writes it.
    replica: Mapped[str | None] = mapped_column(String(REPLICA_MAX), nullable=True, default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, default=None)


class FeedbackRow(Base):
    """A like (+1) or dislike (-1), one per message, kept with the message it rates."""

    __tablename__ = "feedback"

    message_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    rating: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProfileRow(Base):
    """What the assistant may know about its owner; used only when ``opt_in`` is true."""

    __tablename__ = "profiles"

    owner_id: Mapped[str] = mapped_column(
        String(OWNER_MAX), ForeignKey("owners.id", ondelete="CASCADE"), primary_key=True
    )
    display_name: Mapped[str] = mapped_column(String(100), default="")
    language: Mapped[str] = mapped_column(String(16), default="")
    persona: Mapped[str] = mapped_column(String(100), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KnowledgeDocumentRow(Base):
    """A document of a knowledge base; its name is unique in the base (re-uploading replaces it)."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("knowledge", "name", name="uq_knowledge_documents_name"),)

    id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    knowledge: Mapped[str] = mapped_column(String(KNOWLEDGE_NAME_MAX))
    name: Mapped[str] = mapped_column(String(DOCUMENT_NAME_MAX))
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(Integer, default=0)  # bytes uploaded
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KnowledgeChunkRow(Base):
    """A chunk and the words it is found by (``terms``: segmented, see ``chat.knowledge.terms``).
    The full-text index over ``terms`` is dialect-specific and made by the migration: an FTS5
    table kept in step by triggers on SQLite, a GIN expression index on PostgreSQL."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (Index("ix_knowledge_chunks_document", "document_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        String(ID_MAX), ForeignKey("knowledge_documents.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    terms: Mapped[str] = mapped_column(Text)


class KnowledgeVectorRow(Base):
    """A chunk's embedding (float32, little-endian) and the model that made it: the portable
    layout. On a PostgreSQL with pgvector, migration 0004 turns ``vector`` into pgvector's type and
    adds ``chinese`` (``chat.store.vector_column.TABLE`` describes that layout)."""

    __tablename__ = "knowledge_vectors"

    chunk_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("knowledge_chunks.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200))
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class ServerKeyRow(Base):
    """A key the server made for itself (``chat.store.keys``): the visitor cookie key."""

    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# The tables, for Core statements: the store's hot paths skip the ORM's unit of work (a turn's
# writes cost several times less), while the typed classes above stay the one schema definition.
owners: sa.Table = OwnerRow.__table__  # type: ignore[assignment]
conversations: sa.Table = ConversationRow.__table__  # type: ignore[assignment]
messages: sa.Table = MessageRow.__table__  # type: ignore[assignment]
feedback: sa.Table = FeedbackRow.__table__  # type: ignore[assignment]
profiles: sa.Table = ProfileRow.__table__  # type: ignore[assignment]
knowledge_documents: sa.Table = KnowledgeDocumentRow.__table__  # type: ignore[assignment]
knowledge_chunks: sa.Table = KnowledgeChunkRow.__table__  # type: ignore[assignment]
knowledge_vectors: sa.Table = KnowledgeVectorRow.__table__  # type: ignore[assignment]
server_keys: sa.Table = ServerKeyRow.__table__  # type: ignore[assignment]
