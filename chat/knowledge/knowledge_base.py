"""Knowledge bases in the database: add, list and delete documents, and search their chunks.

A knowledge base is a name shared by documents (it exists while it holds one). A document is
parsed and chunked first, then written in one transaction with its chunks (and their vectors,
with an embedder), replacing any document of the same name, so a failure leaves nothing half
indexed and a search never sees a half-replaced document. Searching is one indexed full-text
query (``chat.knowledge.fulltext``), fused with a vector ranking when an embedder is given: by
PostgreSQL with pgvector (``chat.knowledge.vectors_pg``), else here, in memory.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chat.errors import BackendError
from chat.knowledge import fulltext, vectors_pg
from chat.knowledge.chunk import Chunk, chunk
from chat.knowledge.errors import BadDocumentName, BadKnowledgeName, DocumentTooLarge, EmptyDocument
from chat.knowledge.limits import Limits
from chat.knowledge.parse import parse
from chat.knowledge.records import DocumentInfo, KnowledgeInfo, Source
from chat.knowledge.terms import index_terms, query_terms
from chat.store.database import translate_errors
from chat.store.tables import (
    DOCUMENT_NAME_MAX,
    KNOWLEDGE_NAME_MAX,
    knowledge_chunks,
    knowledge_documents,
    knowledge_vectors,
    utcnow,
)
from chat.store.vector_column import embedding_text, is_chinese

if TYPE_CHECKING:
    from chat.knowledge.embeddings import Embedder

log = logging.getLogger(__name__)
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # as --knowledge-max-bytes
SEARCH_LIMIT = 5
MAX_LIMIT = 50
CANDIDATES = 4  # with embeddings, each ranking offers this many times ``limit`` chunks to fuse
_VECTOR_STAMP = sa.text(
    "SELECT count(*) AS n, max(v.chunk_id) AS newest FROM knowledge_vectors v "
    "JOIN knowledge_chunks c ON c.id = v.chunk_id JOIN knowledge_documents d ON d.id = c.document_id "
    "WHERE d.knowledge = :knowledge AND v.model = :model"
)
_EXISTS = sa.text("SELECT 1 FROM knowledge_documents WHERE knowledge = :knowledge LIMIT 1")
_NAME = re.compile(rf"^(?!\.)[\w.-]{{1,{KNOWLEDGE_NAME_MAX}}}$")
_UNSEEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))  # control and format characters, line breaks


def check_name(knowledge: str) -> str:
    """``knowledge`` when it can name a knowledge base (1-64 letters, digits, ``-_.``, Chinese
    included, not starting with a dot); else ``BadKnowledgeName``."""
    if not isinstance(knowledge, str) or not _NAME.match(knowledge):
        raise BadKnowledgeName(name=str(knowledge)[:80])
    return knowledge


def document_name(filename: str) -> str:
    """The file name without any folders a browser or client put in front of it, and without
    control or format characters (a NUL, a newline, a right-to-left override that disguises the
    extension); ``BadDocumentName`` when nothing is left or it is longer than the store keeps."""
    shown = "".join(c for c in filename if unicodedata.category(c) not in _UNSEEN)
    name = PurePath(shown.replace("\\", "/")).name.strip()
    if not name:
        raise BadDocumentName(reason="knowledge.name_empty")
    if len(name) > DOCUMENT_NAME_MAX:
        raise BadDocumentName(reason="knowledge.name_long", length=len(name), limit=DOCUMENT_NAME_MAX)
    return name


@dataclass(frozen=True)
class _Vectors:
    """One knowledge base's vectors in memory: rows of ``matrix`` belong to ``chunk_ids``;
    ``chinese``: the ids of the chunks written mostly in Chinese."""

    stamp: tuple[int, int]
    chunk_ids: list[int]
    matrix: np.ndarray
    chinese: frozenset[int]


class KnowledgeBase:
    """Named knowledge bases on a SQLAlchemy engine (SQLite or PostgreSQL, migrated).

    >>> kb = KnowledgeBase(engine)
    >>> kb.add_document("shop", "returns.md", b"# Returns\\n\\nWithin 30 days.")
    >>> kb.search("shop", "how long can I return things?")[0].heading
    'Returns'
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        limits: Limits | None = None,
        embedder: Embedder | None = None,
        min_similarity: float = 0.0,
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        # with embeddings, a question whose nearest chunk is less similar gets no chunks at all:
        # full-text words in common are not enough (greetings and general questions share some)
        self.min_similarity = min_similarity
        self.max_bytes = max_bytes
        self.limits = limits or Limits()
        self.embedder = embedder
        self._owns_engine = owns_engine
        self._vectors: dict[str, _Vectors] = {}
        self._vectors_lock = threading.Lock()
        # PostgreSQL with pgvector ranks the vectors itself; else they are ranked here, in memory
        self._pg = vectors_pg.prepare(engine) if embedder is not None else None
        # vectors are kept per embedding model: another model's (an earlier setting) do not compare
        self._model = getattr(embedder, "name", "")

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with translate_errors(self.engine.url), self.engine.begin() as connection:
            yield connection

    # --- documents ----------------------------------------------------------------------------

    def add_document(self, knowledge: str, filename: str, data: bytes) -> DocumentInfo:
        """Parse, chunk and index ``data`` as ``filename`` in ``knowledge``, replacing a document
        of the same name; nothing is written unless all of it is."""
        check_name(knowledge)
        name = document_name(filename)
        if len(data) > self.max_bytes:
            raise DocumentTooLarge(size=len(data), limit=self.max_bytes)
        chunks = chunk(parse(name, data, self.limits), max_chunks=self.limits.chunks)
        title = PurePath(name).stem.replace("_", " ").replace("-", " ")
        terms = [index_terms(title, c.heading, c.text) for c in chunks]
        if not any(terms):
            raise EmptyDocument()
        vectors = self._embed_chunks(chunks)
        return self._write(knowledge, name, len(data), chunks, terms, vectors)

    def _embed_chunks(self, chunks: Sequence[Chunk]) -> list[list[float]] | None:
        if self.embedder is None:
            return None
        return self.embedder.embed([embedding_text(c.heading, c.text) for c in chunks])

    def _write(
        self,
        knowledge: str,
        name: str,
        size: int,
        chunks: Sequence[Chunk],
        terms: Sequence[str],
        vectors: list[list[float]] | None,
    ) -> DocumentInfo:
        doc_id = secrets.token_urlsafe(18)
        created = utcnow()
        model = self._model
        docs, rows = knowledge_documents, knowledge_chunks
        with self._tx() as c:
            fulltext.lock_document(c, knowledge, name)
            # chunks, their index entries and vectors go with the document (ON DELETE CASCADE)
            c.execute(sa.delete(docs).where(docs.c.knowledge == knowledge, docs.c.name == name))
            c.execute(
                sa.insert(docs).values(
                    id=doc_id,
                    knowledge=knowledge,
                    name=name,
                    chunks=len(chunks),
                    size=size,
                    created_at=created,
                )
            )
            values = [
                {"document_id": doc_id, "position": i, "heading": ch.heading, "text": ch.text, "terms": t}
                for i, (ch, t) in enumerate(zip(chunks, terms, strict=True))
            ]
            if vectors is None:
                c.execute(sa.insert(rows), values)
            else:
                ids = c.execute(
                    sa.insert(rows).returning(rows.c.id, sort_by_parameter_order=True), values
                ).scalars()
                if self._pg is not None:
                    chinese = [is_chinese(ch.heading, ch.text) for ch in chunks]
                    self._pg.write(c, model, list(zip(ids, vectors, chinese, strict=True)))
                else:
                    c.execute(
                        sa.insert(knowledge_vectors),
                        [
                            {"chunk_id": i, "model": model, "vector": np.asarray(v, "<f4").tobytes()}
                            for i, v in zip(ids, vectors, strict=True)
                        ],
                    )
        if self._pg is not None and vectors:
            self._pg.index(model, len(vectors[0]))
        return DocumentInfo(doc_id, name, len(chunks), knowledge, created)

    def delete_document(self, knowledge: str, document_id: str) -> bool:
        """Delete one document with its chunks; False when ``knowledge`` holds no such id."""
        check_name(knowledge)
        docs = knowledge_documents
        with self._tx() as c:
            done = c.execute(sa.delete(docs).where(docs.c.knowledge == knowledge, docs.c.id == document_id))
        return bool(done.rowcount)

    def list_documents(self, knowledge: str) -> list[DocumentInfo]:
        """The documents of ``knowledge`` by name ([] when it has none)."""
        check_name(knowledge)
        docs = knowledge_documents
        query = sa.select(docs.c.id, docs.c.name, docs.c.chunks, docs.c.created_at)
        with self._tx() as c:
            rows = c.execute(query.where(docs.c.knowledge == knowledge).order_by(docs.c.name)).all()
        return [DocumentInfo(r.id, r.name, r.chunks, knowledge, r.created_at) for r in rows]

    def list_knowledge(self) -> list[KnowledgeInfo]:
        """Every knowledge base (a name with at least one document), by name."""
        docs = knowledge_documents
        query = (
            sa.select(docs.c.knowledge, sa.func.count(), sa.func.sum(docs.c.chunks))
            .group_by(docs.c.knowledge)
            .order_by(docs.c.knowledge)
        )
        with self._tx() as c:
            rows = c.execute(query).all()
        return [KnowledgeInfo(name, count, int(chunks or 0)) for name, count, chunks in rows]

    def exists(self, knowledge: str) -> bool:
        """Whether ``knowledge`` holds a document (False for a name that cannot be one)."""
        if not isinstance(knowledge, str) or not _NAME.match(knowledge):
            return False
        return bool(fulltext.read(self.engine, _EXISTS, {"knowledge": knowledge}))

    # --- search -------------------------------------------------------------------------------

    def search(self, knowledge: str, query: str, *, limit: int = SEARCH_LIMIT) -> list[Source]:
        """The chunks of ``knowledge`` that best answer ``query``, best first ([] when none match)."""
        check_name(knowledge)
        limit = max(1, min(limit, MAX_LIMIT))
        terms = query_terms(query)
        wanted = limit * CANDIDATES if self.embedder is not None else limit
        rows = fulltext.search(self.engine, knowledge, terms, wanted)
        if self.embedder is None:
            return [Source(r.name, r.heading, r.text, float(r.score), r.document_id) for r in rows]
        return self._fused(knowledge, query, rows, limit)

    def _fused(self, knowledge: str, query: str, rows: Sequence[Any], limit: int) -> list[Source]:
        """Full text fused with the embedding rankings (``chat.knowledge.fusion.fuse``)."""
        from chat.knowledge.fusion import fuse

        assert self.embedder is not None
        try:
            vector = self.embedder.embed([query])[0]
        except BackendError as exc:  # the embedding service is down: full text still answers
            log.warning("knowledge search without embeddings: %s", exc)
            return [Source(r.name, r.heading, r.text, float(r.score), r.document_id) for r in rows[:limit]]
        depth = limit * CANDIDATES
        if self._pg is not None:
            dense, chinese, best = self._pg.ranked(knowledge, self._model, vector, depth)
        else:
            cached = self._load_vectors(knowledge)
            (dense, best), chinese = self._ranked(cached, vector), cached.chinese
        if best < self.min_similarity:  # the question is about none of these documents: no reference
            return []
        fused = fuse([r.id for r in rows], dense, chinese.__contains__, query, depth=depth)[:limit]
        found = {r.id: r for r in rows}
        missing = [chunk_id for chunk_id, _ in fused if chunk_id not in found]
        if missing:
            found.update(self._chunks(missing))
        return [
            Source(found[i].name, found[i].heading, found[i].text, score, found[i].document_id)
            for i, score in fused
            if i in found
        ]

    def _chunks(self, ids: Sequence[int]) -> dict[int, Any]:
        docs, rows = knowledge_documents, knowledge_chunks
        query = sa.select(
            rows.c.id, rows.c.heading, rows.c.text, docs.c.name, docs.c.id.label("document_id")
        ).join(docs, docs.c.id == rows.c.document_id)
        with self._tx() as c:
            return {r.id: r for r in c.execute(query.where(rows.c.id.in_(list(ids))))}

    @classmethod
    def _nearest(cls, cached: _Vectors, vector: Sequence[float]) -> list[int]:
        """Every chunk id by cosine similarity to ``vector``, best first (vectors are normalised;
        ``fuse`` also ranks the chunks of the other language among all of them)."""
        return cls._ranked(cached, vector)[0]

    @staticmethod
    def _ranked(cached: _Vectors, vector: Sequence[float]) -> tuple[list[int], float]:
        """``_nearest``, and the best chunk's similarity (0 without chunks)."""
        if not cached.chunk_ids:
            return [], 0.0
        scores = cached.matrix @ np.asarray(vector, dtype=np.float32)
        return [cached.chunk_ids[i] for i in np.argsort(-scores, kind="stable")], float(scores.max())

    def _load_vectors(self, knowledge: str) -> _Vectors:
        """The knowledge base's vectors, read again only when its chunks changed (any replica's
        change shows in the count and the newest chunk id, since ids only grow)."""
        docs, rows, vecs = knowledge_documents, knowledge_chunks, knowledge_vectors
        joined = vecs.join(rows, rows.c.id == vecs.c.chunk_id).join(docs, docs.c.id == rows.c.document_id)
        # only this embedder's vectors: another model's (an earlier setting) have other dimensions
        model = self._model
        mine = sa.and_(docs.c.knowledge == knowledge, vecs.c.model == model)
        row = fulltext.read(self.engine, _VECTOR_STAMP, {"knowledge": knowledge, "model": model})[0]
        stamp = (int(row.n), int(row.newest or 0))
        with self._vectors_lock:
            cached = self._vectors.get(knowledge)
        if cached is not None and cached.stamp == stamp:
            return cached
        columns = (vecs.c.chunk_id, vecs.c.vector, rows.c.heading, rows.c.text)
        with self._tx() as c:
            found = c.execute(sa.select(*columns).select_from(joined).where(mine)).all()
        ids = [r.chunk_id for r in found]
        matrix = (
            np.stack([np.frombuffer(r.vector, dtype="<f4") for r in found])
            if found
            else np.zeros((0, 0), np.float32)
        )
        chinese = frozenset(r.chunk_id for r in found if is_chinese(r.heading, r.text))
        fresh = _Vectors(stamp, ids, matrix, chinese)
        with self._vectors_lock:
            self._vectors[knowledge] = fresh
        return fresh
