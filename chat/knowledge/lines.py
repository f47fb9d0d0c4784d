"""Plain text into paragraphs and lines, a piece at a time: every document format's text
(``parse`` for text and Markdown, ``office`` for Word and PDF) is read the same way."""

from __future__ import annotations

import re
from collections.abc import Iterator

BLANK = re.compile(r"\n\s*\n")
NEWLINE = re.compile("\n")


def paragraphs(text: str) -> Iterator[str]:
    """Paragraphs separated by blank lines, each with its lines joined."""
    for part in pieces(text.replace("\r\n", "\n").replace("\r", "\n"), BLANK):
        lines = [line.strip() for line in part.split("\n") if line.strip()]
        if lines:
            yield join_lines(lines)


def pieces(text: str, separator: re.Pattern[str]) -> Iterator[str]:
    """``separator.split(text)`` one piece at a time (a list of a large file's lines is many
    times the file's size)."""
    start = 0
    for gap in separator.finditer(text):
        yield text[start : gap.start()]
        start = gap.end()
    yield text[start:]


def join_lines(lines: list[str]) -> str:
    """Hard-wrapped lines as one paragraph: a space between words, none between Chinese lines."""
    text = lines[0]
    for line in lines[1:]:
        cjk_seam = text[-1] > "\u2e80" and line[0] > "\u2e80"
        text += ("" if cjk_seam else " ") + line
    return text
