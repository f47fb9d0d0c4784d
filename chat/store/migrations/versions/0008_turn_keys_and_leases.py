"""A user message's client key, stored once per conversation, and the lease of the replica writing
a streaming reply, so any live replica can mark a dead one's replies interrupted (issue 32)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chat.store.tables import KEY_MAX, REPLICA_MAX, UTCDateTime

revision, down_revision = "0008", "0007"  # alembic's chain

STREAMING = sa.text("status = 'streaming'")


def upgrade() -> None:
    op.add_column("messages", sa.Column("client_key", sa.String(KEY_MAX), nullable=True))
    op.add_column("messages", sa.Column("replica", sa.String(REPLICA_MAX), nullable=True))
    op.add_column("messages", sa.Column("lease_until", UTCDateTime(), nullable=True))
    op.create_index("uq_messages_client_key", "messages", ["conversation_id", "client_key"], unique=True)
    op.create_index(
        "ix_messages_streaming",
        "messages",
        ["lease_until"],
        sqlite_where=STREAMING,
        postgresql_where=STREAMING,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_streaming", "messages")
    op.drop_index("uq_messages_client_key", "messages")
    for column in ("lease_until", "replica", "client_key"):
        op.drop_column("messages", column)
