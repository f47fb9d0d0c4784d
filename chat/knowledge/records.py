"""What the knowledge base hands out: documents, knowledge bases and retrieved sources."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chat.common.plain import plain_dict


@dataclass(frozen=True)
class DocumentInfo:
    """A stored document, as the API lists it and returns it after an upload."""

    id: str  # unguessable; a re-upload of the same name gets a new one
    name: str  # the file name as uploaded (re-uploading the same name replaces it)
    chunks: int
    knowledge: str  # the knowledge base's name
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)


@dataclass(frozen=True)
class KnowledgeInfo:
    name: str
    documents: int
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)


@dataclass(frozen=True)
class Source:
    """One retrieved chunk; a search returns them best first."""

    document: str  # document name
    heading: str  # "Returns > Refunds": the path of headings above the chunk ("" when none)
    text: str  # the chunk text
    score: float  # higher is better (the fused score when embeddings are on)
    document_id: str

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)
