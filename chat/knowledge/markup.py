"""HTML to blocks with the standard library's parser: h1-h6 headings, paragraphs and list items,
table rows with their header cells; scripts, styles and page furniture (nav, footer) skipped."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser

from chat.knowledge.chunk import Block, table_row

_SKIP = {"script", "style", "noscript", "template", "head", "nav", "footer", "svg", "button", "select"}
_BREAKS = {
    "p", "div", "li", "ul", "ol", "br", "section", "article", "main", "header", "aside",
    "blockquote", "pre", "dd", "dt", "dl", "figcaption", "hr", "table", "caption", "form",
}  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_PIECE = 1024 * 1024  # characters fed at once: blocks leave early, an unclosed tag is not rescanned often


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.text: list[str] = []
        self.skipping = 0
        self.heading = 0
        self.header: list[str] = []
        self.row: list[str] | None = None
        self.row_is_header = True
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _HEADINGS:
            self.flush()
            self.heading = _HEADINGS[tag]
        elif tag == "tr":
            self.flush()
            self.row, self.row_is_header = [], True
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
            self.row_is_header &= tag == "th"
        elif tag in _BREAKS:
            if self.cell is not None:
                self.cell.append(" ")
            else:
                self.flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAKS:  # <br/>, <hr/>: never an open element
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _HEADINGS and self.heading:
            text = " ".join("".join(self.text).split())
            if text:
                self.blocks.append(Block("heading", text, self.heading))
            self.text.clear()
            self.heading = 0
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.end_row()
        elif tag == "table":
            self.end_row()
            self.header = []
        elif tag in _BREAKS and self.cell is None:
            self.flush()

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        (self.cell if self.cell is not None else self.text).append(data)

    def end_row(self) -> None:
        if self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        row, self.row = self.row, None
        if not row:
            return
        if self.row_is_header and not self.header:
            self.header = [" ".join(c.split()) for c in row]
        elif (block := table_row(self.header, row)) is not None:
            self.blocks.append(block)

    def flush(self) -> None:
        if self.heading:  # a block tag inside a heading: keep collecting the heading's text
            return
        text = " ".join("".join(self.text).split())
        if text:
            self.blocks.append(Block("text", text))
        self.text.clear()


def html(text: str) -> Iterator[Block]:
    """The page's blocks, fed to the parser a piece at a time so they leave as they are read."""
    reader = _Reader()
    for start in range(0, len(text), _PIECE):
        reader.feed(text[start : start + _PIECE])
        yield from _taken(reader.blocks)
    reader.close()
    reader.end_row()
    reader.flush()
    yield from _taken(reader.blocks)


def _taken(blocks: list[Block]) -> list[Block]:
    done = blocks[:]
    blocks.clear()
    return done
