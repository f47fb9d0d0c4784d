"""The operator page's tables (issue 34), on the store's one schema (``chat.store.tables.Base``):
how each reply went (``reply_facts``) and who took which training export (``export_log``).
Migration 0006 creates them; ``chat.store`` imports this module so the schema always has them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from chat.store.tables import KNOWLEDGE_NAME_MAX, OWNER_MAX, Base, UTCDateTime, utcnow


class ReplyFactRow(Base):
    """How one reply went, whichever way it came in: the operator page's figures (issue 34).

    No text is kept here: a stored turn points at its question and reply in ``messages`` and is
    deleted with them (or with its owner); a turn nobody stored keeps only its figures."""

    __tablename__ = "reply_facts"
    __table_args__ = (
        Index("ix_reply_facts_created", "created_at"),
        Index("ix_reply_facts_message", "message_id"),
        Index("ix_reply_facts_question", "question_id"),
        Index("ix_reply_facts_owner", "owner_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    entry: Mapped[str] = mapped_column(String(16))  # gradio | rest | ws | openai
    model: Mapped[str] = mapped_column(String(200), default="")
    persona: Mapped[str] = mapped_column(String(100), default="")  # a persona's key, "custom" or ""
    outcome: Mapped[str] = mapped_column(String(16))  # ok | blocked | error | cancelled | interrupted
    refusal: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the guard's category
    ttft_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_cache: Mapped[bool] = mapped_column(Boolean, default=False)
    knowledge: Mapped[str | None] = mapped_column(String(KNOWLEDGE_NAME_MAX), nullable=True)
    sources: Mapped[int] = mapped_column(Integer, default=0)  # knowledge passages the reply showed
    owner_id: Mapped[str | None] = mapped_column(
        String(OWNER_MAX), ForeignKey("owners.id", ondelete="CASCADE"), nullable=True
    )
    question_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=True
    )
    message_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=True
    )


class ExportLogRow(Base):
    """One training export: who took it, when, with which filters, and how many rows it held."""

    __tablename__ = "export_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    operator: Mapped[str] = mapped_column(String(OWNER_MAX))
    format: Mapped[str] = mapped_column(String(8))
    filters: Mapped[str] = mapped_column(String(400), default="")
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)


reply_facts: sa.Table = ReplyFactRow.__table__  # type: ignore[assignment]
export_log: sa.Table = ExportLogRow.__table__  # type: ignore[assignment]
