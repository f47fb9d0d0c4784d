"""Knowledge bases: the operator's documents, searched to answer from them with sources.

    parse (parse, markup, office) -> chunk -> terms -> one transaction (base) -> fulltext search
    (+ embeddings fused by fusion) -> context (the reference block in the prompt)

``open_knowledge(settings, store)`` is called once at start-up::

    kb = open_knowledge(settings, store)
    kb.add_document("shop", "returns.md", data)
    kb.search("shop", "退货要几天？")      # [Source(document, heading, text, score, document_id)]
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from chat.knowledge import terms
from chat.knowledge.errors import (
    BadDocumentName,
    BadKnowledgeName,
    BrokenDocument,
    DocumentTooLarge,
    DocumentTooLong,
    EmptyDocument,
    EncryptedDocument,
    KnowledgeError,
    KnowledgeNotFound,
    UnsupportedType,
)
from chat.knowledge.knowledge_base import KnowledgeBase, check_name
from chat.knowledge.limits import Limits
from chat.knowledge.records import DocumentInfo, KnowledgeInfo, Source
from chat.settings import Settings

if TYPE_CHECKING:
    from chat.store import Store

KNOWLEDGE_FILE = "knowledge.db"
log = logging.getLogger(__name__)


def open_knowledge(settings: Settings, store: Store | None) -> KnowledgeBase:
    """The knowledge bases, on the conversation store's database when there is one; else (with
    ``CHAT_STORE=off``: knowledge bases are the operator's documents, not users' data) on
    ``CHAT_DATABASE_URL`` or a SQLite file ``knowledge.db`` in the data directory. Migrated and
    ready; an embedder when ``--embedding-url`` or ``--embedding-model`` is set."""
    from chat.knowledge.embeddings import build_embedder
    from chat.store.database import create_engine, data_dir, database_url, migrate, parse_url, safe_url

    embedder = build_embedder(settings)
    if store is not None:
        engine, owned = store.engine, False
    else:
        if settings.database_url:
            url = parse_url(settings.database_url)
        else:
            url = database_url("", data_dir(settings.data_dir)).set(
                database=str(data_dir(settings.data_dir) / KNOWLEDGE_FILE)
            )
        engine, owned = create_engine(url), True
        migrate(engine)
    log.info("knowledge bases: %s", safe_url(engine.url))
    limits = Limits(chars=settings.knowledge_max_chars, chunks=settings.knowledge_max_chunks)
    base = KnowledgeBase(
        engine,
        max_bytes=settings.knowledge_max_bytes,
        limits=limits,
        embedder=embedder,
        min_similarity=settings.knowledge_min_similarity,
        owns_engine=owned,
    )
    if base.list_knowledge():
        # jieba's dictionary takes 1.3 s of CPU and 60 MB to load: not on the first
        # question's clock, and not at all until there are documents (the first upload loads it)
        threading.Thread(target=terms.warm_up, name="jieba-warm-up", daemon=True).start()
    return base


__all__ = [
    "BadDocumentName",
    "BadKnowledgeName",
    "BrokenDocument",
    "DocumentInfo",
    "DocumentTooLarge",
    "DocumentTooLong",
    "EmptyDocument",
    "EncryptedDocument",
    "KnowledgeBase",
    "KnowledgeError",
    "KnowledgeInfo",
    "KnowledgeNotFound",
    "Limits",
    "Source",
    "UnsupportedType",
    "check_name",
    "open_knowledge",
]
