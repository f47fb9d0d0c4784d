"""Chunk vectors in PostgreSQL with pgvector: stored in a ``vector`` column, ranked by the database.

When the ``vector`` extension can be enabled, ``install`` (migration 0004, or the first start
after an operator installed pgvector later) turns ``knowledge_vectors.vector`` from float32 bytes
into a pgvector ``vector`` and adds ``chinese``, the chunk's language, which ``fusion.fuse``
needs. Without pgvector, and on SQLite, nothing changes: ``chat.knowledge.base`` ranks the
vectors in memory.

A search asks for the ``depth`` nearest chunks of each language (cosine distance, ``<=>``) in one
statement and merges the two lists by distance. That holds both rankings ``fuse`` reads (the top
``depth`` of all chunks and the top ``depth`` of the other language), so the fused result is the
in-memory path's.

Index: HNSW, partial expression indexes per embedding model, dimension and language (the
column has no fixed dimension, since models differ), made when a model's first vectors are
written; up to 2,000 dimensions, pgvector's HNSW limit (larger vectors are ranked by an exact
scan). The planner chooses: a small knowledge base is ranked exactly by a scan. Through an
index, pgvector before 0.8 applies the knowledge-base filter after the index scan, which yields
at most ``hnsw.ef_search`` candidates (``EF_SEARCH`` here): a knowledge base that is a small
share of a model's vectors may get a shorter dense ranking (full text still answers). From 0.8
on, iterative index scans (``hnsw.iterative_scan``, set here) lift that limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.engine import Engine

from chat.knowledge.centring import is_chinese
from chat.store.database import translate_errors
from chat.store.errors import StoreError

log = logging.getLogger(__name__)

HNSW_MAX_DIMENSIONS = 2000
# HNSW candidates per index scan (pgvector's default is 40; at most 1,000). On 10,000 random
# 384-dimension vectors (a hard case for HNSW) the 20 nearest per language found through the
# index agreed with the exact ranking at 0.98 with 400, 0.89 with 160, 0.53 with 40 (measured).
EF_SEARCH = 400
ITERATIVE_SINCE = (0, 8, 0)  # pgvector version with hnsw.iterative_scan
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
_VERSION = sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")


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


def _predicate(model: str, dims: int, chinese: bool, prefix: str = "") -> str:
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
                f"WHERE {_predicate(model, dims, chinese)}"
            )
        )
    return names


def ranking_query(model: str, dims: int) -> sa.TextClause:
    """The ``:depth`` nearest chunks of ``:knowledge`` to ``:query`` in each language, nearest
    first within each: ``(chunk_id, chinese, distance)``."""
    d = int(dims)

    def one(chinese: bool) -> str:
        return (
            f"SELECT v.chunk_id, v.chinese, (v.vector::vector({d})) <=> CAST(:query AS vector({d})) AS distance "
            "FROM knowledge_vectors v JOIN knowledge_chunks c ON c.id = v.chunk_id "
            "JOIN knowledge_documents d ON d.id = c.document_id "
            f"WHERE d.knowledge = :knowledge AND {_predicate(model, dims, chinese, 'v.')} "
            "ORDER BY distance LIMIT :depth"  # a second key would keep the index from ordering
        )

    statement = f"({one(True)}) UNION ALL ({one(False)})"
    return sa.text(statement).bindparams(sa.bindparam("query", type_=Vector()))


class PgVectors:
    """Writes and ranks chunk vectors on a PostgreSQL whose ``knowledge_vectors`` is pgvector's."""

    def __init__(self, engine: Engine, version: tuple[int, ...]) -> None:
        self.engine = engine
        self.version = version
        settings = "SELECT set_config('hnsw.ef_search', :n, true)"  # for this transaction only
        if version >= ITERATIVE_SINCE:
            settings += ", set_config('hnsw.iterative_scan', 'strict_order', true)"
        self._settings = sa.text(settings)

    def write(
        self, connection: sa.Connection, model: str, rows: Sequence[tuple[int, Sequence[float], bool]]
    ) -> None:
        """Insert ``(chunk_id, vector, chinese)`` rows in the caller's transaction."""
        if not rows:
            return
        connection.execute(
            sa.insert(TABLE),
            [{"chunk_id": i, "model": model, "vector": v, "chinese": zh} for i, v, zh in rows],
        )

    def index(self, model: str, dims: int) -> None:
        """Make the model's HNSW indexes when missing, after the upload's commit: CREATE INDEX
        waits for other uploads' writes, which must not wait for it (a deadlock). A failure is
        logged; searches then scan exactly until an upload makes the index."""
        with contextlib.suppress(StoreError), translate_errors(self.engine.url), self.engine.begin() as c:
            ensure_indexes(c, model, dims)

    def nearest(
        self, knowledge: str, model: str, vector: Sequence[float], depth: int
    ) -> tuple[list[int], frozenset[int]]:
        """Chunk ids by cosine distance to ``vector``, nearest first: the ``depth`` nearest of
        each language merged; and which of them are Chinese."""
        with translate_errors(self.engine.url), self.engine.connect() as c:
            c.execute(self._settings, {"n": str(EF_SEARCH)})
            params = {"query": vector, "knowledge": knowledge, "depth": depth}
            rows = c.execute(ranking_query(model, len(vector)), params).all()
        rows.sort(key=lambda r: (r.distance, r.chunk_id))
        return [r.chunk_id for r in rows], frozenset(r.chunk_id for r in rows if r.chinese)


def prepare(engine: Engine) -> PgVectors | None:
    """``PgVectors`` when the database ranks the vectors (converting them first if pgvector was
    installed after the migration); None on SQLite, or without pgvector, which is logged."""
    if engine.dialect.name != "postgresql":
        return None
    with translate_errors(engine.url), engine.begin() as c:
        problem = install(c)
        version = "" if problem else c.execute(_VERSION).scalar()
    if problem:
        log.warning(
            "pgvector is not available on this PostgreSQL (%s): knowledge vectors are ranked in memory "
            "(pgvector: postgresql-NN-pgvector from PGDG's apt repository, or the pgvector/pgvector image)",
            problem,
        )
        return None
    return PgVectors(engine, _version(str(version)))


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
