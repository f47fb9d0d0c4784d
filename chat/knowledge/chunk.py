"""Chunks that follow a document's structure: sections under their headings, paragraphs packed
up to a bounded size (a long one split at sentence ends, English or Chinese), table rows alone.

The parsers (``chat.knowledge.parse``) turn each file type into the same few ``Block`` kinds, so
this is the one place that decides what a chunk is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from chat.knowledge.errors import DocumentTooLong

CHUNK_CHARS = 800  # a chunk's most characters: a few sentences, a few hundred tokens
HEADING_CHARS = 200  # a heading longer than this is kept shortened in the path
# A sentence: up to Chinese end punctuation, or English punctuation followed by a space (so 3.5
# and e.g. stay whole), keeping the space after it so the pieces join back to the same text.
_SENTENCE = re.compile(r".+?(?:[。！？；]+[」』”’）)]*|[.!?;]+['\")\]]*(?=\s)|$)\s*", re.S)


@dataclass(frozen=True)
class Block:
    """A piece of a parsed document: a heading (``level`` 1-9), a paragraph, or a table row
    (its text already "column: value | column: value")."""

    kind: Literal["heading", "text", "row"]
    text: str
    level: int = 0


@dataclass(frozen=True)
class Chunk:
    heading: str  # "Returns > Refunds"
    text: str


def table_row(header: list[str], cells: list[str]) -> Block | None:
    """A row as one block that keeps its column names; None for a row with nothing in it."""
    parts = []
    for i, cell in enumerate(cells):
        value = " ".join(cell.split())
        if not value:
            continue
        name = " ".join(header[i].split()) if i < len(header) else ""
        parts.append(f"{name}: {value}" if name else value)
    return Block("row", " | ".join(parts)) if parts else None


def chunk(blocks: Iterable[Block], *, max_chars: int = CHUNK_CHARS, max_chunks: int = 0) -> list[Chunk]:
    """The document's chunks in reading order; paragraphs of one section share a chunk while
    they fit in ``max_chars``. ``blocks`` is read as it comes, so past ``max_chunks`` chunks
    (when given) ``DocumentTooLong`` stops the parser too."""
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    pending: list[str] = []
    size = 0  # of the pending pieces joined: kept as they come (a chunk may gather hundreds)

    def add(text: str) -> None:
        if max_chunks and len(chunks) >= max_chunks:
            raise DocumentTooLong(reason="knowledge.limit_chunks", limit=max_chunks)
        chunks.append(Chunk(" > ".join(title for _, title in path), text))

    def flush() -> None:
        nonlocal size
        if pending:
            add("\n\n".join(pending))
            pending.clear()
        size = 0

    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.kind == "heading":
            flush()
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, " ".join(text.split())[:HEADING_CHARS]))
        elif block.kind == "row":
            flush()
            for piece in split_text(text, max_chars):
                add(piece)
        else:
            for piece in split_text(text, max_chars):
                if pending and size + len(piece) > max_chars:
                    flush()
                pending.append(piece)
                size += len(piece) + 2
    flush()
    return chunks


def split_text(text: str, max_chars: int = CHUNK_CHARS) -> list[str]:
    """``text`` in pieces of at most ``max_chars``, cut at sentence ends where it can be."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current = ""
    for match in _SENTENCE.finditer(text):
        sentence = match.group()
        if len(sentence) > max_chars:  # one sentence longer than a chunk: cut it hard
            if current.strip():
                pieces.append(current.strip())
                current = ""
            cut = (len(sentence) - 1) // max_chars * max_chars  # by index: a long text is copied once
            pieces += [sentence[i : i + max_chars].strip() for i in range(0, cut, max_chars)]
            sentence = sentence[cut:]
        if len(current) + len(sentence.rstrip()) > max_chars:
            pieces.append(current.strip())
            current = ""
        current += sentence
    if current.strip():
        pieces.append(current.strip())
    return [p for p in pieces if p]
