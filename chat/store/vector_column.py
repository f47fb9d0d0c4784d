"""The pgvector layout of ``knowledge_vectors``: enabling the extension, converting stored vectors
to it and back, and the HNSW indexes per embedding model and language.

``install`` runs from migration 0004 and again at each start (``chat.knowledge.vectors_pg.prepare``)
so an operator who installs pgvector later gets it converted; without pgvector, and on SQLite,
nothing changes. The portable layout is ``chat.store.tables.KnowledgeVectorRow``; ranking lives in
``chat.knowledge.vectors_pg``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector

from chat.i18n.language import chinese_share

HNSW_MAX_DIMENSIONS = 2000
_BATCH = 1000  # rows per round trip when converting stored vectors
_LOCK = "knowledge:pgvector"  # advisory lock: replicas starting together convert in turn

# The pgvector layout of the table (chat.store.tables.KnowledgeVectorRow is the portable one).
TABLE = sa.Table(
    "knowledge_vectors",
    sa.MetaData(),
    sa.Column("chunk_id", sa.Integer(), primary_key=True),
    sa.Column("model", sa.String(200)),
    sa.Column("vector", Vector()),
    sa.Column("chinese", sa.Boolean()),
)
_COLUMN_TYPE = sa.text(
    "SELECT udt_name FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'knowledge_vectors' AND column_name = 'vector'"
)


def has_vector_column(connection: sa.Connection) -> bool:
    """Whether ``knowledge_vectors.vector`` is pgvector's type (``install`` has run)."""
    return connection.execute(_COLUMN_TYPE).scalar() == "vector"


def install(connection: sa.Connection) -> str:
    """Enable pgvector and convert the stored vectors, in ``connection``'s transaction: "" when
    the vectors are (now) pgvector's, else why not, with nothing changed (SQLite; the extension
    is missing, or may not be created here: that needs a superuser, or an existing extension)."""
    if connection.dialect.name != "postgresql":
        return "not PostgreSQL"
    if has_vector_column(connection):
        return ""
    available = sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    if connection.execute(available).first() is None:
        return "the server has no vector extension"
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": _LOCK})
    if has_vector_column(connection):  # another replica converted it while this one waited
        return ""
    failure = ""
    try:
        with connection.begin_nested():  # a failed CREATE must not abort the caller's transaction
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError as exc:
        failure = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    if failure:
        return f"CREATE EXTENSION vector failed ({failure}): a superuser must run it once"
    _convert(connection)
    return ""


def _convert(connection: sa.Connection) -> None:
    """float32 bytes to ``vector``, each chunk's language into ``chinese``, then the indexes."""

    for statement in (
        "ALTER TABLE knowledge_vectors RENAME COLUMN vector TO vector_bytes",
        "ALTER TABLE knowledge_vectors ADD COLUMN vector vector, ADD COLUMN chinese boolean NOT NULL DEFAULT false",
    ):
        connection.execute(sa.text(statement))
    rows = sa.text(
        "SELECT v.chunk_id, v.vector_bytes, c.heading, c.text FROM knowledge_vectors v "
        "JOIN knowledge_chunks c ON c.id = v.chunk_id WHERE v.chunk_id > :after ORDER BY v.chunk_id LIMIT :n"
    )
    update = (
        sa.update(TABLE)
        .where(TABLE.c.chunk_id == sa.bindparam("id"))
        .values(vector=sa.bindparam("v", type_=Vector()), chinese=sa.bindparam("zh"))
    )
    after = 0
    while batch := connection.execute(rows, {"after": after, "n": _BATCH}).all():
        values = [
            {"id": r.chunk_id, "v": np.frombuffer(r.vector_bytes, "<f4"), "zh": is_chinese(r.heading, r.text)}
            for r in batch
        ]
        connection.execute(update, values)
        after = batch[-1].chunk_id
    connection.execute(
        sa.text("ALTER TABLE knowledge_vectors DROP COLUMN vector_bytes, ALTER COLUMN vector SET NOT NULL")
    )
    models = sa.text("SELECT DISTINCT model, vector_dims(vector) AS dims FROM knowledge_vectors")
    for model, dims in connection.execute(models).all():
        ensure_indexes(connection, model, dims)


def uninstall(connection: sa.Connection) -> None:
    """Back to float32 bytes (the migration's downgrade); the extension itself stays."""
    if connection.dialect.name != "postgresql" or not has_vector_column(connection):
        return
    connection.execute(sa.text("ALTER TABLE knowledge_vectors ADD COLUMN vector_bytes bytea"))
    rows = sa.select(TABLE.c.chunk_id, TABLE.c.vector).where(TABLE.c.chunk_id > sa.bindparam("after"))
    rows = rows.order_by(TABLE.c.chunk_id).limit(_BATCH)
    update = sa.text("UPDATE knowledge_vectors SET vector_bytes = :b WHERE chunk_id = :id")
    after = 0
    while batch := connection.execute(rows, {"after": after}).all():
        values = [{"id": r.chunk_id, "b": np.asarray(r.vector, "<f4").tobytes()} for r in batch]
        connection.execute(update, values)
        after = batch[-1].chunk_id
    for statement in (  # dropping the column drops its HNSW indexes
        "ALTER TABLE knowledge_vectors DROP COLUMN vector, DROP COLUMN chinese",
        "ALTER TABLE knowledge_vectors RENAME COLUMN vector_bytes TO vector",
        "ALTER TABLE knowledge_vectors ALTER COLUMN vector SET NOT NULL",
    ):
        connection.execute(sa.text(statement))


def index_name(model: str, dims: int, chinese: bool) -> str:
    """The HNSW index of one model's vectors of one language (a digest: model names may be long
    or odd)."""
    key = f"{model}\0{dims}\0{'zh' if chinese else 'en'}"
    return "ix_knowledge_vectors_hnsw_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def index_predicate(model: str, dims: int, chinese: bool, prefix: str = "") -> str:
    """One model's vectors of one dimension and language, with the model as a literal: the
    planner uses a partial index only for a query whose condition it can prove implies the
    index's. Per language, so neither ranking is filtered after the index scan."""
    escaped = model.replace("\\", "\\\\").replace("'", "''").replace(":", "\\:")  # \: for sa.text
    return (
        f"{prefix}model = E'{escaped}' AND vector_dims({prefix}vector) = {int(dims)} "
        f"AND {prefix}chinese = {'true' if chinese else 'false'}"
    )


def ensure_indexes(connection: sa.Connection, model: str, dims: int) -> list[str]:
    """Make the model's HNSW indexes (one per language) when missing; their names, none above
    HNSW's dimensions."""
    if not 0 < dims <= HNSW_MAX_DIMENSIONS:
        return []
    names = []
    for chinese in (True, False):
        name = index_name(model, dims, chinese)
        names.append(name)
        if connection.execute(sa.text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
            continue
        # two uploads of a new model's first documents: the second waits, then finds the index
        lock = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
        connection.execute(lock, {"key": name})
        connection.execute(
            sa.text(
                f"CREATE INDEX IF NOT EXISTS {name} ON knowledge_vectors "
                f"USING hnsw ((vector::vector({int(dims)})) vector_cosine_ops) "
                f"WHERE {index_predicate(model, dims, chinese)}"
            )
        )
    return names


def embedding_text(heading: str, text: str) -> str:
    """What a chunk's vector is made from."""
    return f"{heading}\n{text}" if heading else text


def is_chinese(heading: str, text: str) -> bool:
    """Whether a chunk is written mostly in Chinese (its vectors are ranked by language)."""
    return chinese_share(embedding_text(heading, text)) >= 0.5
