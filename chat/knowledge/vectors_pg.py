"""Chunk vectors in PostgreSQL with pgvector: stored in a ``vector`` column, ranked by the database.

When the ``vector`` extension can be enabled, ``install`` (migration 0004, or the first start
after an operator installed pgvector later) turns ``knowledge_vectors.vector`` from float32 bytes
into a pgvector ``vector`` and adds ``chinese``, the chunk's language, which ``fusion.fuse``
needs. Without pgvector, and on SQLite, nothing changes: ``chat.knowledge.knowledge_base`` ranks the
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
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.engine import Engine

from chat.store import vector_column
from chat.store.database import translate_errors
from chat.store.errors import StoreError

log = logging.getLogger(__name__)

# HNSW candidates per index scan (pgvector's default is 40; at most 1,000). On 10,000 random
# 384-dimension vectors (a hard case for HNSW) the 20 nearest per language found through the
# index agreed with the exact ranking at 0.98 with 400, 0.89 with 160, 0.53 with 40 (measured).
EF_SEARCH = 400
ITERATIVE_SINCE = (0, 8, 0)  # pgvector version with hnsw.iterative_scan
_VERSION = sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")


def ranking_query(model: str, dims: int) -> sa.TextClause:
    """The ``:depth`` nearest chunks of ``:knowledge`` to ``:query`` in each language, nearest
    first within each: ``(chunk_id, chinese, distance)``."""
    d = int(dims)

    def one(chinese: bool) -> str:
        return (
            f"SELECT v.chunk_id, v.chinese, (v.vector::vector({d})) <=> CAST(:query AS vector({d})) AS distance "
            "FROM knowledge_vectors v JOIN knowledge_chunks c ON c.id = v.chunk_id "
            "JOIN knowledge_documents d ON d.id = c.document_id "
            f"WHERE d.knowledge = :knowledge AND {vector_column.index_predicate(model, dims, chinese, 'v.')} "
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
            sa.insert(vector_column.TABLE),
            [{"chunk_id": i, "model": model, "vector": v, "chinese": zh} for i, v, zh in rows],
        )

    def index(self, model: str, dims: int) -> None:
        """Make the model's HNSW indexes when missing, after the upload's commit: CREATE INDEX
        waits for other uploads' writes, which must not wait for it (a deadlock). A failure is
        logged; searches then scan exactly until an upload makes the index."""
        with contextlib.suppress(StoreError), translate_errors(self.engine.url), self.engine.begin() as c:
            vector_column.ensure_indexes(c, model, dims)

    def nearest(
        self, knowledge: str, model: str, vector: Sequence[float], depth: int
    ) -> tuple[list[int], frozenset[int]]:
        """Chunk ids by cosine distance to ``vector``, nearest first: the ``depth`` nearest of
        each language merged; and which of them are Chinese."""
        return self.ranked(knowledge, model, vector, depth)[:2]  # type: ignore[return-value]

    def ranked(
        self, knowledge: str, model: str, vector: Sequence[float], depth: int
    ) -> tuple[list[int], frozenset[int], float]:
        """``nearest``, and the nearest chunk's cosine similarity (0 without chunks)."""
        with translate_errors(self.engine.url), self.engine.connect() as c:
            c.execute(self._settings, {"n": str(EF_SEARCH)})
            params = {"query": vector, "knowledge": knowledge, "depth": depth}
            rows = c.execute(ranking_query(model, len(vector)), params).all()
        rows.sort(key=lambda r: (r.distance, r.chunk_id))
        best = 1.0 - float(rows[0].distance) if rows else 0.0
        return [r.chunk_id for r in rows], frozenset(r.chunk_id for r in rows if r.chinese), best


def prepare(engine: Engine) -> PgVectors | None:
    """``PgVectors`` when the database ranks the vectors (converting them first if pgvector was
    installed after the migration); None on SQLite, or without pgvector, which is logged."""
    if engine.dialect.name != "postgresql":
        return None
    with translate_errors(engine.url), engine.begin() as c:
        problem = vector_column.install(c)
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
