"""The guard evaluation set: load it, make its evasion copy, score a classifier on it.

The set lives in ``tests/data/guard_eval/`` (dev*.jsonl, test.jsonl; see its README). Each item has
``text``, ``lang`` (zh|en), ``label`` (harmful|benign|mention) and ``category``. A classifier is
any ``Callable[[str], bool]`` that says True to refuse. Used by ``bench/bench_guards.py`` and
the tests, so both score the same way.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "tests" / "data" / "guard_eval"
LABELS = ("harmful", "benign", "mention")
CATEGORIES = ("fraud", "violence", "theft", "drugs_weapons", "intrusion", "credential_leak", "none")


@dataclass(frozen=True)
class Item:
    text: str
    lang: str
    label: str
    category: str
    transform: str = ""  # the evasion applied, for the evasion copy


def load(part: str, directory: Path = DATA_DIR) -> list[Item]:
    """``part`` is "dev" (``dev.jsonl`` and the later ``dev2.jsonl``) or "test"."""
    items = []
    for path in sorted(directory.glob(f"{part}*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            raw = json.loads(line)
            item = Item(raw["text"], raw["lang"], raw["label"], raw["category"])
            if item.label not in LABELS or item.category not in CATEGORIES or item.lang not in ("zh", "en"):
                raise ValueError(f"{path.name}:{number}: bad label, category or lang")
            items.append(item)
    return items


# -- evasion transforms ----------------------------------------------------------------------

_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\ufeff", "\u2060")
_LOOKALIKE = str.maketrans("aceopxyiABCEHKMOPTXs", "асеорхуіАВСЕНКМОРТХѕ")  # Latin -> Cyrillic


def _zero_width(text: str, rng: random.Random) -> str:
    return "".join(ch + (rng.choice(_ZERO_WIDTH) if ch.strip() else "") for ch in text)


def _inside_words(text: str, rng: random.Random) -> str:
    """Separators inside words: the longest Latin word spelled out ("s t e a l"), a punctuation
    mark in the middle of every other one of 4+ letters, one between every two Chinese characters.

    A lone space splitting a word ("st eal") is not used: no rule can tell it from two words.
    """
    words = text.split(" ")
    latin = [i for i, w in enumerate(words) if len(w) >= 4 and w.isascii() and w.isalpha()]
    longest = max(latin, key=lambda i: len(words[i]), default=None)
    for i in latin:
        if i == longest:
            words[i] = " ".join(words[i])
        else:
            cut = len(words[i]) // 2
            words[i] = words[i][:cut] + rng.choice(".-*_·") + words[i][cut:]
    text = " ".join(words)
    return "".join(
        ch
        + (
            rng.choice((" ", ".", "·", "/"))
            if _is_cjk(ch) and i + 1 < len(text) and _is_cjk(text[i + 1])
            else ""
        )
        for i, ch in enumerate(text)
    )


def _full_width(text: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in text)


def _lookalike(text: str, rng: random.Random) -> str:
    return text.translate(_LOOKALIKE)


@functools.cache
def _s2t() -> Callable[[str], str]:
    import opencc

    return opencc.OpenCC("s2t").convert


def _traditional(text: str, rng: random.Random) -> str:
    return _s2t()(text)


def _mixed_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    "zero_width": _zero_width,
    "inside_words": _inside_words,
    "full_width": _full_width,
    "lookalike": _lookalike,
    "traditional": _traditional,
    "mixed_case": _mixed_case,
}


def evasion_copy(items: Iterable[Item], *, seed: int = 11) -> list[Item]:
    """Every transform applied to every harmful item (a transform that changes nothing is skipped)."""
    rng = random.Random(seed)
    out = []
    for item in items:
        if item.label != "harmful":
            continue
        for name, transform in TRANSFORMS.items():
            text = transform(item.text, rng)
            if text != item.text:
                out.append(replace(item, text=text, transform=name))
    return out


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class Score:
    """Counts for one slice: refused harmful (tp), passed harmful (fn), refused others (fp)."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def fp_rate(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None


def score(items: Iterable[Item], refuses: Callable[[str], bool]) -> tuple[dict[str, Score], list[Item]]:
    """Scores by slice ("all", "lang:zh", "cat:fraud", "label:mention"...) and the misclassified items."""
    scores: dict[str, Score] = {}
    wrong = []
    for item in items:
        refused = refuses(item.text)
        slices = ["all", f"lang:{item.lang}", f"label:{item.label}", f"label:{item.label}:{item.lang}"]
        if item.category != "none":
            slices.append(f"cat:{item.category}")
        for name in slices:
            s = scores.setdefault(name, Score())
            if item.label == "harmful":
                s.tp += refused
                s.fn += not refused
            else:
                s.fp += refused
                s.tn += not refused
        if refused != (item.label == "harmful"):
            wrong.append(item)
    return scores, wrong
