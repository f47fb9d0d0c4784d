"""How much of one document is read: a small upload must not grow into a large process.

A compressed file can inflate many times over (a zip bomb in a .docx, a PDF whose streams hold
megabytes of text, a CSV of a million one-letter rows), and every chunk costs index and search
time. So reading stops at the first bound crossed, with an error that names the bound:

    unpacked   bytes a .docx may inflate to (its XML parts), read through a streaming
               decompressor that stops there whatever the zip's headers declare
    entries    files in one archive
    pages      pages of one PDF
    chars      characters of extracted text (``--knowledge-max-chars``)
    chunks     chunks of one document (``--knowledge-max-chunks``)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

from chat.knowledge.chunk import Block
from chat.knowledge.errors import DocumentTooLong, EmptyDocument
from chat.settings import Settings

_SETTINGS = {f.name: f.default for f in fields(Settings)}
MAX_CHARS: int = _SETTINGS["knowledge_max_chars"]  # about a 1,500-page book
MAX_CHUNKS: int = _SETTINGS["knowledge_max_chunks"]
MAX_PAGES = 5_000
UNPACKED_MAX = 32 * 1024 * 1024  # a long Word manual's XML stays far below
ENTRIES_MAX = 5_000  # files in a .docx; a real one holds a few dozen


@dataclass(frozen=True)
class Limits:
    chars: int = MAX_CHARS
    chunks: int = MAX_CHUNKS
    pages: int = MAX_PAGES
    unpacked: int = UNPACKED_MAX
    entries: int = ENTRIES_MAX


def bounded(blocks: Iterable[Block], limits: Limits) -> Iterator[Block]:
    """``blocks`` as they come, ``DocumentTooLong`` as soon as their text passes
    ``limits.chars`` (the parser stops there: nothing past the bound is read), and
    ``EmptyDocument`` at the end when none held text."""
    total = 0
    text = False
    for block in blocks:
        total += len(block.text)
        if total > limits.chars:
            raise DocumentTooLong(reason="knowledge.limit_chars", limit=limits.chars)
        text = text or (block.kind != "heading" and bool(block.text.strip()))
        yield block
    if not text:
        raise EmptyDocument()
