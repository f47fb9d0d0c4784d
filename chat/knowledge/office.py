"""PDF (pypdf) and Word .docx (python-docx) to blocks.

PDFs have no reliable structure in their text layer: each page's text becomes paragraphs (split
at blank lines), cut at sentence ends by the chunker, under the headings of the bookmarks (the
outline) that point to that page. Word files keep their structure:
paragraphs styled "Heading N" or "Title" are headings, tables give one row block per row.

Both are compressed, so both are read within ``chat.knowledge.limits``: a PDF page by page (its
page count bounded), a .docx after its XML parts were inflated through a streaming decompressor
that stops at the byte budget whatever the zip's headers declare (zipfile's own ``read()``
inflates a member whole before it compares it with its declared size).
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pypdf
from pypdf.errors import DependencyError, PyPdfError

from chat.knowledge.chunk import Block, table_row
from chat.knowledge.errors import BrokenDocument, DocumentTooLong, EncryptedDocument
from chat.knowledge.limits import Limits
from chat.knowledge.lines import paragraphs

_PIECE = 64 * 1024  # bytes inflated at a time
_CENTRAL = b"PK\x01\x02"  # a central directory entry: one per file in the archive
# parts python-docx reads for text; the others (images, fonts, embedded files) are kept empty
_TEXT_PARTS = (".xml", ".rels")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted Office file is an OLE container, not a zip
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.I)
# What the libraries raise on malformed input besides their own errors: the parse seam turns any
# of them into BrokenDocument.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError, OSError)
_MALFORMED += (RecursionError, zipfile.BadZipFile, NotImplementedError)


def pdf(data: bytes, limits: Limits) -> Iterator[Block]:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns about every repairable flaw
    try:
        with _pdf_bounds(limits):
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                try:  # an owner password only (printing restricted): readable with the empty password
                    opened = reader.decrypt("") != pypdf.PasswordType.NOT_DECRYPTED
                except (DependencyError, PyPdfError, *_MALFORMED):
                    opened = False
                if not opened:
                    raise EncryptedDocument()
            if len(reader.pages) > limits.pages:
                raise DocumentTooLong(reason="knowledge.limit_pages", limit=limits.pages)
            headings = _outline(reader)
    except (EncryptedDocument, DocumentTooLong):
        raise
    except (PyPdfError, *_MALFORMED):
        raise BrokenDocument(reason="knowledge.not_valid", kind="PDF") from None
    for number in range(len(reader.pages)):  # a page at a time: the text bound stops the reading
        try:
            with _pdf_bounds(limits):  # not across a yield: the bounds live in a context variable
                page = reader.pages[number].extract_text() or ""
        except (PyPdfError, *_MALFORMED):
            raise BrokenDocument(reason="knowledge.not_valid", kind="PDF") from None
        yield from (Block("heading", title, level) for level, title in headings.get(number, []))
        yield from (Block("text", p) for p in paragraphs(page))


def _pdf_bounds(limits: Limits) -> AbstractContextManager[Any]:
    """pypdf's own bounds on an inflated stream, lowered to the archive budget."""
    most = limits.unpacked
    return pypdf.apply_configuration(
        maximum_declared_stream_length=most,
        array_based_stream_maximum_output_length=most,
        lzw_maximum_output_length=most,
        run_length_maximum_output_length=most,
        zlib_maximum_output_length=most,
        brotli_maximum_output_length=most,
        stream_decoding_work_maximum_length=4 * most,
    )


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


def docx(data: bytes, limits: Limits) -> Iterator[Block]:
    if data.startswith(_OLE):
        raise EncryptedDocument()
    import docx as python_docx
    from docx.opc.exceptions import OpcError
    from docx.table import Table
    from lxml.etree import LxmlError

    try:
        document = python_docx.Document(io.BytesIO(inflated(data, limits)))
        # python-docx looks a paragraph's style up among all styles each time (4 ms a paragraph
        # on a default template): the names by id once, and each paragraph's id from its XML
        names = {style.style_id: style.name or "" for style in document.styles}
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                yield from _table(item)
                continue
            text = item.text.strip()
            style = names.get(item._p.style or "", "")  # no id: the default style, body text
            match = _HEADING_STYLE.match(style)
            if match:
                yield Block("heading", text, int(match.group(1)) or 1)
            elif style == "Title":
                yield Block("heading", text, 1)
            elif text:
                yield Block("text", text)
    except (OpcError, LxmlError, *_MALFORMED):
        raise BrokenDocument(reason="knowledge.not_valid", kind="Word (.docx)") from None


def inflated(data: bytes, limits: Limits) -> bytes:
    """The archive again, stored uncompressed, with its text parts inflated a piece at a time
    until ``limits.unpacked`` bytes in all (``BrokenDocument`` past it: a zip bomb), whatever
    sizes the headers declare; zipfile checks each member against its declared size and CRC."""
    if data.count(_CENTRAL) > limits.entries:  # counted in the bytes: the header's count may lie
        raise BrokenDocument(reason="knowledge.entries", limit=limits.entries)
    left = limits.unpacked
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as stored:
        for info in source.infolist():
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise zipfile.BadZipFile("Word writes deflate only")  # bzip2/lzma inflate unbounded
            parts: list[bytes] = []
            if info.filename.lower().endswith(_TEXT_PARTS):
                with source.open(info) as member:
                    while piece := member.read(_PIECE):
                        left -= len(piece)
                        if left < 0:
                            raise BrokenDocument(reason="knowledge.unpacked", limit=limits.unpacked)
                        parts.append(piece)
            stored.writestr(info.filename, b"".join(parts))
    return out.getvalue()


def _table(table: object) -> list[Block]:
    rows = [[cell.text for cell in row.cells] for row in table.rows]  # type: ignore[attr-defined]
    if not rows:
        return []
    header = rows[0]
    return [block for row in rows[1:] if (block := table_row(header, row)) is not None]
