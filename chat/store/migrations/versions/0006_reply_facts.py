"""How replies went (``reply_facts``) and who took training exports (``export_log``), for the
operator page and its exports (issue 34).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chat.store.tables import UTCDateTime

revision, down_revision = "0006", "0005"  # alembic's chain


def _message(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=True)


def upgrade() -> None:
    op.create_table(
        "reply_facts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("entry", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("persona", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("refusal", sa.String(64), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("from_cache", sa.Boolean(), nullable=False),
        sa.Column("knowledge", sa.String(64), nullable=True),
        sa.Column("sources", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(200), sa.ForeignKey("owners.id", ondelete="CASCADE"), nullable=True),
        _message("question_id"),
        _message("message_id"),
    )
    for name, column in (
        ("created", "created_at"),
        ("message", "message_id"),
        ("question", "question_id"),
        ("owner", "owner_id"),
    ):
        op.create_index(f"ix_reply_facts_{name}", "reply_facts", [column])
    op.create_table(
        "export_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("operator", sa.String(200), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("filters", sa.String(400), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("export_log")
    op.drop_table("reply_facts")
