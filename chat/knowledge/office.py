"""PDF (pypdf) and Word .docx (python-docx) to blocks.

PDFs have no reliable structure in their text layer: each page's text becomes paragraphs (split
at blank lines), cut at sentence ends by the chunker, under the headings of the bookmarks (the
outline) that point to that page. Word files keep their structure:
paragraphs styled "Heading N" or "Title" are headings, tables give one row block per row.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from typing import Any

import pypdf
from pypdf.errors import DependencyError, PyPdfError

from chat.knowledge.chunk import Block, table_row
from chat.knowledge.errors import BrokenDocument, EncryptedDocument
from chat.knowledge.parse import paragraphs

UNPACKED_MAX = 200 * 1024 * 1024  # what a .docx may inflate to; real ones stay far below
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted Office file is an OLE container, not a zip
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.I)
# What the libraries raise on malformed input besides their own errors: the parse seam turns any
# of them into BrokenDocument.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError, OSError)
_MALFORMED += (RecursionError, zipfile.BadZipFile, NotImplementedError)


def pdf(data: bytes) -> list[Block]:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns about every repairable flaw
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:  # an owner password only (printing restricted): readable with the empty password
                opened = reader.decrypt("") != pypdf.PasswordType.NOT_DECRYPTED
            except (DependencyError, PyPdfError, *_MALFORMED):
                opened = False
            if not opened:
                raise EncryptedDocument()
        pages = [page.extract_text() or "" for page in reader.pages]
        headings = _outline(reader)
    except EncryptedDocument:
        raise
    except (PyPdfError, *_MALFORMED):
        raise BrokenDocument(reason="knowledge.not_valid", kind="PDF") from None
    blocks: list[Block] = []
    for number, page in enumerate(pages):
        blocks += [Block("heading", title, level) for level, title in headings.get(number, [])]
        blocks += [Block("text", p) for p in paragraphs(page)]
    return blocks


def _outline(reader: Any) -> dict[int, list[tuple[int, str]]]:
    """The PDF's bookmarks as headings, by the page they point to (its text follows them)."""
    found: dict[int, list[tuple[int, str]]] = {}

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            page = reader.get_destination_page_number(item)
            title = " ".join(str(item.title or "").split())
            if page is not None and page >= 0 and title:
                found.setdefault(page, []).append((min(level, 9), title))

    try:  # a broken outline is no reason to refuse a readable document
        walk(reader.outline, 1)
    except (PyPdfError, *_MALFORMED):
        return {}
    return found


def docx(data: bytes) -> list[Block]:
    if data.startswith(_OLE):
        raise EncryptedDocument()
    import docx as python_docx
    from docx.opc.exceptions import OpcError
    from docx.table import Table
    from lxml.etree import LxmlError

    try:
        unpacked = sum(entry.file_size for entry in zipfile.ZipFile(io.BytesIO(data)).infolist())
        if unpacked > UNPACKED_MAX:  # a zip bomb: refused before anything is inflated
            raise BrokenDocument(reason="knowledge.unpacked", limit=UNPACKED_MAX)
        document = python_docx.Document(io.BytesIO(data))
        blocks: list[Block] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                blocks.extend(_table(item))
                continue
            text = item.text.strip()
            style = item.style.name if item.style is not None else ""
            match = _HEADING_STYLE.match(style or "")
            if match:
                blocks.append(Block("heading", text, int(match.group(1)) or 1))
            elif style == "Title":
                blocks.append(Block("heading", text, 1))
            elif text:
                blocks.append(Block("text", text))
    except (OpcError, LxmlError, *_MALFORMED):
        raise BrokenDocument(reason="knowledge.not_valid", kind="Word (.docx)") from None
    return blocks


def _table(table: object) -> list[Block]:
    rows = [[cell.text for cell in row.cells] for row in table.rows]  # type: ignore[attr-defined]
    if not rows:
        return []
    header = rows[0]
    return [block for row in rows[1:] if (block := table_row(header, row)) is not None]
