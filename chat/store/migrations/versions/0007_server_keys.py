"""Keys the server makes for itself, shared by every replica: the visitor cookie key (issue 32)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chat.store.tables import UTCDateTime

revision, down_revision = "0007", "0006"  # alembic's chain


def upgrade() -> None:
    op.create_table(
        "server_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_keys")
