"""Knowledge bases: documents, chunks, vectors, and the full-text index over the chunks' terms.

The index is the one dialect-specific part of the schema: on SQLite an external-content FTS5
table (BM25 ranking; Porter stemming over words that ``chat.knowledge.terms`` already segmented)
that triggers keep in step with ``knowledge_chunks``, cascade deletes included; on PostgreSQL a
GIN index on ``to_tsvector('english', terms)``. ``chat.knowledge.fulltext`` queries them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chat.store.tables import UTCDateTime

revision, down_revision = "0002", "0001"  # alembic's chain

SQLITE_INDEX = [
    "CREATE VIRTUAL TABLE knowledge_fts USING fts5(terms, content='knowledge_chunks', "
    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER knowledge_chunks_ai AFTER INSERT ON knowledge_chunks BEGIN "
    "INSERT INTO knowledge_fts(rowid, terms) VALUES (new.id, new.terms); END",
    "CREATE TRIGGER knowledge_chunks_ad AFTER DELETE ON knowledge_chunks BEGIN "
    "INSERT INTO knowledge_fts(knowledge_fts, rowid, terms) VALUES ('delete', old.id, old.terms); END",
]
POSTGRES_INDEX = [
    "CREATE INDEX ix_knowledge_chunks_terms ON knowledge_chunks USING gin (to_tsvector('english', terms))",
]


def upgrade() -> None:
    op.create_table(
        "knowledge_documents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("knowledge", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("knowledge", "name", name="uq_knowledge_documents_name"),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "document_id",
            sa.String(64),
            sa.ForeignKey("knowledge_documents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
    )
    op.create_index("ix_knowledge_chunks_document", "knowledge_chunks", ["document_id", "position"])
    op.create_table(
        "knowledge_vectors",
        sa.Column(
            "chunk_id",
            sa.Integer(),
            sa.ForeignKey("knowledge_chunks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    statements = SQLITE_INDEX if op.get_bind().dialect.name == "sqlite" else POSTGRES_INDEX
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE knowledge_fts")
    for table in ("knowledge_vectors", "knowledge_chunks", "knowledge_documents"):
        op.drop_table(table)
