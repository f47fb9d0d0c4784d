"""Sample knowledge bases loaded at start-up, when ``--knowledge-seed`` names a folder.

The folder holds one subfolder per knowledge base (``prompts/knowledge/shop/*`` becomes the
``shop`` knowledge base). A knowledge base is seeded only while it has no documents, so the
samples arrive on the first start and never overwrite what the operator uploaded or deleted
since. A file that cannot be indexed stops the start with a ``ConfigError`` naming it, and the
documents seeded before it are taken out again: a later start retries the whole set.
"""

from __future__ import annotations

import logging
from pathlib import Path

from chat.errors import ChatError, ConfigError
from chat.knowledge.knowledge_base import KnowledgeBase
from chat.knowledge.records import DocumentInfo

log = logging.getLogger(__name__)


def seed_knowledge(library: KnowledgeBase, folder: Path) -> list[DocumentInfo]:
    """Load each subfolder of ``folder`` into the knowledge base of its name, unless that one
    already has documents; returns the documents added."""
    if not folder.is_dir():
        raise ConfigError(f"--knowledge-seed: {folder} is not a folder")
    added: list[DocumentInfo] = []
    for base in sorted(p for p in folder.iterdir() if p.is_dir()):
        if library.exists(base.name):
            continue
        seeded = []
        for path in sorted(p for p in base.iterdir() if p.is_file() and not p.name.startswith(".")):
            try:
                seeded.append(library.add_document(base.name, path.name, path.read_bytes()))
            except (ChatError, OSError) as exc:
                for info in seeded:
                    library.delete_document(info.knowledge, info.id)
                raise ConfigError(f"--knowledge-seed: {path} cannot be indexed ({exc})") from None
        log.info("knowledge base %s seeded with %d documents from %s", base.name, len(seeded), base)
        added += seeded
    return added
