"""The one place with dialect-specific SQL: a ranked full-text query over the chunks' terms.

SQLite: the FTS5 table ``knowledge_fts`` and its BM25 ranking (``bm25()`` is lower-is-better, so
the score is its negation). PostgreSQL: ``to_tsvector('english', terms)`` (GIN-indexed) against
an OR of the words, ranked by ``ts_rank_cd``. The migration ``0002_knowledge`` builds both
indexes. Either way it is one indexed query, joined to the documents of one knowledge base.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

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
    "ts_rank_cd(to_tsvector('english', c.terms), q, 1) AS score "
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


def search(connection: sa.Connection, knowledge: str, terms: Sequence[str], limit: int) -> list[sa.Row]:
    """Rows (id, heading, text, name, document_id, score) of the best chunks, best first."""
    if not terms:
        return []
    dialect = connection.dialect.name
    statement = _SQLITE if dialect == "sqlite" else _POSTGRES
    params = {"query": match_query(dialect, terms), "knowledge": knowledge, "limit": limit}
    return list(connection.execute(statement, params))
