"""Tool calls of an answer: the operator's tools the app ran for a reply, kept with the reply.

A JSON list of ``{"id", "name", "arguments", "result", "status", "duration"}`` (``ToolUse.to_dict``)
in the order they ran; NULL for replies that ran none. Shown again when the conversation is
reopened, never sent back to the model as history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0005", "0004"  # alembic's chain


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("tool_calls", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("tool_calls")
