"""pgvector: chunk vectors in a ``vector`` column, ranked by PostgreSQL (HNSW per embedding model).

Only on a PostgreSQL where the ``vector`` extension can be enabled; on SQLite, or without
pgvector, nothing changes and the vectors stay float32 bytes ranked in memory (a later start
converts them once pgvector is installed). ``chat.store.vector_column`` does the work.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from chat.store import vector_column

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    vector_column.install(op.get_bind())  # why it did not, if so, is logged at start (prepare)


def downgrade() -> None:
    vector_column.uninstall(op.get_bind())
