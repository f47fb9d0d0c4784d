"""Files to ``Block``s: Markdown, plain text and CSV here; HTML in ``markup``; PDF and Word in
``office``. The file type is the name's extension; every failure is a ``KnowledgeError`` with a
message the operator can act on, never a parser's traceback. Every parser yields its blocks as it
reads, so a document past a bound of ``chat.knowledge.limits`` is dropped before the rest of it
is read into memory.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePath

from chat.knowledge.chunk import Block, table_row
from chat.knowledge.errors import BrokenDocument, DocumentTooLong, EmptyDocument, UnsupportedType
from chat.knowledge.limits import Limits, bounded
from chat.knowledge.lines import NEWLINE, join_lines, paragraphs, pieces

TYPES = (".md", ".markdown", ".txt", ".csv", ".html", ".htm", ".pdf", ".docx")

_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_RULE = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
_FRONT_MATTER = re.compile(r"\A---\n.*?\n(?:---|\.\.\.)\n", re.S)  # YAML metadata of static sites
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def file_type(filename: str) -> str:
    """The extension that decides the parser (``.md``); ``UnsupportedType`` for any other."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in TYPES:
        raise UnsupportedType(kind=suffix or filename[:80], types=" ".join(TYPES))
    return suffix


def parse(filename: str, data: bytes, limits: Limits | None = None) -> Iterator[Block]:
    """The document's blocks as they are read: ``UnsupportedType`` or ``EmptyDocument`` (no
    bytes) at once; ``EmptyDocument`` (no text) or a bound crossed while reading."""
    suffix = file_type(filename)
    if not data.strip():
        raise EmptyDocument()
    from chat.knowledge import markup, office  # imported here: python-docx and pypdf load slowly

    limits = limits or Limits()

    def text(data: bytes) -> str:
        """A text file's text (an HTML page's source), refused at once past the bound: reading
        it a line or a tag at a time costs microseconds each."""
        decoded = decode(data)
        if len(decoded) > limits.chars:
            raise DocumentTooLong(reason="knowledge.limit_chars", limit=limits.chars)
        return decoded

    parsers: dict[str, Callable[[bytes], Iterable[Block]]] = {
        ".md": lambda d: markdown(text(d)),
        ".markdown": lambda d: markdown(text(d)),
        ".txt": lambda d: plain(text(d)),
        ".csv": lambda d: table(text(d)),
        ".html": lambda d: markup.html(text(d)),  # the page's source, markup and all
        ".htm": lambda d: markup.html(text(d)),
        ".pdf": lambda d: office.pdf(d, limits),
        ".docx": lambda d: office.docx(d, limits),
    }
    return bounded(parsers[suffix](data), limits)


def decode(data: bytes) -> str:
    """Text in UTF-8 (with or without a BOM), UTF-16 with a BOM, or GB18030 (Chinese Windows
    exports); ``BrokenDocument`` for binary data."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    elif b"\x00" in data[:4096]:
        raise BrokenDocument(reason="knowledge.binary")
    else:
        candidates = ["utf-8-sig", "gb18030"]
    for encoding in candidates:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise BrokenDocument(reason="knowledge.encoding")


def plain(text: str) -> Iterator[Block]:
    return (Block("text", p) for p in paragraphs(text))


def table(text: str) -> Iterator[Block]:
    """CSV (or semicolon/tab separated): one row block per line, with the header's names."""
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    header: list[str] | None = None
    try:
        for row in csv.reader(io.StringIO(text), dialect):
            if not any(c.strip() for c in row):
                continue
            if header is None:
                header = row
            elif (block := table_row(header, row)) is not None:
                yield block
    except csv.Error:
        raise BrokenDocument(reason="knowledge.csv") from None


def markdown(text: str) -> Iterator[Block]:
    """Headings (``#`` and underlined), paragraphs, code blocks as text, and pipe tables."""
    para: list[str] = []
    rows: list[str] = []
    fence = ""

    def flush() -> list[Block]:
        done: list[Block] = []
        if para:
            done.append(Block("text", join_lines(para) if not fence else "\n".join(para)))
            para.clear()
        if rows:
            done.extend(_pipe_table(rows))
            rows.clear()
        return done

    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n").replace("\r", "\n"), count=1)
    for raw in pieces(text, NEWLINE):
        line = raw.rstrip()
        opening = _FENCE.match(line)
        if fence:
            if opening and opening.group(1) == fence:
                yield from flush()
                fence = ""
            else:
                para.append(line)
            continue
        if opening:
            yield from flush()
            fence = opening.group(1)
            continue
        heading = _ATX.match(line)
        if heading:
            yield from flush()
            yield Block("heading", _plain(heading.group(2)), len(heading.group(1)))
        elif line.strip().startswith("|") and line.count("|") >= 2:
            if para:
                yield from flush()
            rows.append(line)
        elif _SETEXT.match(line) and len(para) == 1 and not rows:
            title = para.pop()
            yield Block("heading", _plain(title), 1 if "=" in line else 2)
        elif not line.strip() or (_RULE.match(line) and not para):  # a blank line or a thematic break
            yield from flush()
        else:
            if rows:
                yield from flush()
            para.append(line.strip())
    yield from flush()


def _plain(text: str) -> str:
    """A heading without Markdown's marks: links as their text, no emphasis or code ticks."""
    return re.sub(r"(\*\*|__|\*|`)", "", _LINK.sub(r"\1", text)).strip()


def _pipe_table(lines: list[str]) -> list[Block]:
    def cells(line: str) -> list[str]:
        inner = line.strip()
        inner = inner[1:] if inner.startswith("|") else inner
        inner = inner[:-1] if inner.endswith("|") else inner
        return [c.strip() for c in re.split(r"(?<!\\)\|", inner)]

    if len(lines) >= 2 and _TABLE_RULE.match(lines[1]):
        header, body = cells(lines[0]), lines[2:]
    else:
        header, body = [], lines
    return [block for line in body if (block := table_row(header, cells(line))) is not None]
