"""The one place with dialect-specific SQL: a ranked full-text query over the chunks' terms,
and reads that on SQLite do not take the write lock.

SQLite: the FTS5 table ``knowledge_fts`` and its BM25 ranking (``bm25()`` is lower-is-better, so
the score is its negation). PostgreSQL: ``to_tsvector('english', terms)`` (GIN-indexed) against
an OR of the words, ranked by ``ts_rank`` (on the evaluation set, recall@1 0.98 en / 0.92 zh
against 0.92 / 0.88 for ``ts_rank_cd``). The migration ``0002_knowledge`` builds both indexes.
Either way it is one indexed query, joined to the documents of one knowledge base.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chat.store.database import translate_errors
from chat.store.errors import StoreError

# SQLite's page cache per connection, in KiB (its default is 2 MiB): the index of 10,000 chunks
# is about 7 MB, and a search that finds its pages cached costs ~40% less CPU at p95 (measured).
CACHE_KIB = 32 * 1024
_CACHED = "knowledge_cache_size"
_SQLITE = sa.text(
    "SELECT c.id, c.heading, c.text, d.name, d.id AS document_id, -bm25(knowledge_fts) AS score "
    "FROM knowledge_fts "
    "JOIN knowledge_chunks c ON c.id = knowledge_fts.rowid "
    "JOIN knowledge_documents d ON d.id = c.document_id "
    "WHERE knowledge_fts MATCH :query AND d.knowledge = :knowledge "
    "ORDER BY score DESC, c.id LIMIT :limit"
)
_POSTGRES = sa.text(
    "SELECT c.id, c.heading, c.text, d.name, d.id AS document_id, "
    "ts_rank(to_tsvector('english', c.terms), q) AS score "
    "FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id, "
    "to_tsquery('english', :query) AS q "
    "WHERE to_tsvector('english', c.terms) @@ q AND d.knowledge = :knowledge "
    "ORDER BY score DESC, c.id LIMIT :limit"
)


def match_query(dialect: str, terms: Sequence[str]) -> str:
    """Any of ``terms`` (letters and digits only, see ``chat.knowledge.terms``) in the dialect's
    query syntax: ``"a" OR "b"`` for FTS5, ``'a' | 'b'`` for ``to_tsquery``."""
    if dialect == "sqlite":
        return " OR ".join(f'"{term}"' for term in terms)
    return " | ".join(f"'{term}'" for term in terms)


def search(engine: Engine, knowledge: str, terms: Sequence[str], limit: int) -> list[Any]:
    """Rows (id, heading, text, name, document_id, score) of the best chunks, best first."""
    if not terms:
        return []
    dialect = engine.dialect.name
    statement = _SQLITE if dialect == "sqlite" else _POSTGRES
    params = {"query": match_query(dialect, terms), "knowledge": knowledge, "limit": limit}
    return read(engine, statement, params)


def lock_document(connection: sa.Connection, knowledge: str, name: str) -> None:
    """Make concurrent writes of one document name wait for each other until commit, so each
    replaces the one before instead of failing on the unique name. SQLite's write transactions
    already run one at a time (BEGIN IMMEDIATE); on PostgreSQL a transaction advisory lock."""
    if connection.dialect.name == "postgresql":
        key = {"key": f"knowledge:{knowledge}/{name}"}
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), key)


def read(engine: Engine, statement: sa.TextClause, params: Mapping[str, Any]) -> list[Any]:
    """The rows of one read-only statement (named attributes, as ``sa.Row``).

    On SQLite it runs on the driver's connection in autocommit mode: the store's transactions
    begin IMMEDIATE (taking the write lock, see ``chat.store.database``), and a chat turn's search
    must not wait behind a long upload or hold up the conversation store's writes; WAL lets it
    read beside them. ``StoreError`` when the database fails."""
    if engine.dialect.name != "sqlite":
        with translate_errors(engine.url), engine.connect() as connection:
            return list(connection.execute(statement, params))
    failure = ""
    try:
        raw = engine.raw_connection()
        try:
            if not raw.info.get(_CACHED):  # once per pooled connection
                raw.driver_connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                raw.info[_CACHED] = True
            cursor = raw.driver_connection.execute(str(statement), dict(params))
            names = [column[0] for column in cursor.description]
            rows = [_Row(zip(names, values, strict=True)) for values in cursor.fetchall()]
        finally:
            raw.close()
    except sqlite3.Error as exc:
        failure = f"{type(exc).__name__}: {exc}"
    except sa.exc.SQLAlchemyError as exc:  # the pool could not connect
        failure = type(exc).__name__
    if failure:  # raised outside the except block: no SQL parameters in a logged context
        raise StoreError(failure)
    return rows


class _Row(dict[str, Any]):
    """A result row whose columns are attributes too (``row.heading``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
