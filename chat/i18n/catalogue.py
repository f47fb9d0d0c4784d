"""The format of the sentence files: a key on its own line, then its sentence in each language on
an indented ``en:`` and ``zh:`` line; ``#`` lines are comments. Plain text, so a translator
reads and edits it without Python's quotes and braces."""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"^\s+(en|zh): ?(.*)$")


def entries(text: str) -> dict[str, dict[str, str]]:
    """The sentences of ``text``, by key and language; ``ValueError`` names a malformed line."""
    table: dict[str, dict[str, str]] = {}
    key = ""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            key = line.strip()
            if key in table:
                raise ValueError(f"line {number}: {key} is there twice")
            table[key] = {}
            continue
        sentence = _SENTENCE.match(line)
        if sentence is None or not key:
            raise ValueError(f"line {number}: expected '  en: ...' or '  zh: ...' under a key")
        table[key][sentence[1]] = sentence[2]
    return table
