"""pgvector: chunk vectors in a ``vector`` column, ranked by PostgreSQL (HNSW per embedding model).

Only on a PostgreSQL where the ``vector`` extension can be enabled; on SQLite, or without
pgvector, nothing changes and the vectors stay float32 bytes ranked in memory (a later start
converts them once pgvector is installed). ``chat.store.vector_column`` does the work.
"""

from __future__ import annotations

from alembic import op

from chat.store import vector_column

revision, down_revision = "0004", "0003"  # alembic's chain


def upgrade() -> None:
    vector_column.install(op.get_bind())  # why it did not, if so, is logged at start (prepare)


def downgrade() -> None:
    vector_column.uninstall(op.get_bind())
