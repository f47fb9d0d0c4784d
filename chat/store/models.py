"""The tables, as typed SQLAlchemy 2 models. Migrations (``migrations/versions``) create the same.

    owners 1─* conversations 1─* messages 1─? feedback
    owners 1─? profiles

An owner is an opaque identity string chosen by the access layer (``user:alice``, ``anon:<id>``,
``api:<name>``). Deleting a conversation or an owner cascades in the database (``ON DELETE
CASCADE``; SQLite enforces it because every connection turns ``foreign_keys`` on).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

OWNER_MAX = 200
TITLE_MAX = 200
ID_MAX = 64


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
    __table_args__ = (Index("ix_messages_conversation", "conversation_id", "id"),)

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


# The tables, for Core statements: the store's hot paths skip the ORM's unit of work (a turn's
# writes cost several times less), while the typed classes above stay the one schema definition.
owners: sa.Table = OwnerRow.__table__  # type: ignore[assignment]
conversations: sa.Table = ConversationRow.__table__  # type: ignore[assignment]
messages: sa.Table = MessageRow.__table__  # type: ignore[assignment]
feedback: sa.Table = FeedbackRow.__table__  # type: ignore[assignment]
profiles: sa.Table = ProfileRow.__table__  # type: ignore[assignment]
