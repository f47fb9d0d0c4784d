"""How much of a text is Chinese: ranks and indexes keep each language apart by it."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
LETTERS_PER_CHARACTER = 3  # a Chinese character carries about as much as three Latin letters


def chinese_share(text: str) -> float:
    """0 for English, 1 for Chinese, in between for a text that mixes them (0 with neither)."""
    chinese = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text)) / LETTERS_PER_CHARACTER
    return chinese / (chinese + latin) if chinese + latin else 0.0
