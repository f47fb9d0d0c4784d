"""Sources of an answer: the knowledge-base passages a reply used, kept with the reply.

A JSON list of ``{"document", "heading", "text", "score"}``; NULL for replies that used none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0003", "0002"  # alembic's chain


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("sources", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("sources")
