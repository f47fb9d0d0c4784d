"""The knowledge evaluation set: load it, index it, score a retriever on it.

The set lives in ``tests/data/knowledge/`` (``docs/`` and ``questions.jsonl``; see its README).
A retriever is any ``Callable[[str], Sequence[Hit]]`` returning chunks best first (a
``KnowledgeBase.search`` bound to a knowledge base is one). Used by ``bench/bench_knowledge.py``
and the tests, so both score the same way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "tests" / "data" / "knowledge"
GROUPS = ("en", "zh", "cross")
SPLITS = ("tune", "heldout")
DEPTH = 10  # ranks looked at for MRR; recall@1 and @3 need far fewer


class Hit(Protocol):
    """What a retriever returns per chunk (``chat.knowledge.Source`` has these)."""

    document: str
    heading: str
    text: str


@dataclass(frozen=True)
class Question:
    q: str
    lang: str  # the question's language
    document: str
    section: str  # a heading, or a CSV row's first cell, that answers it
    doc_lang: str
    split: str

    @property
    def group(self) -> str:
        """ "en" or "zh" when the question and the document share a language, else "cross"."""
        return self.lang if self.lang == self.doc_lang else "cross"

    def answered_by(self, hit: Hit) -> bool:
        return hit.document == self.document and (self.section in hit.heading or self.section in hit.text)


@dataclass(frozen=True)
class Scores:
    count: int
    recall_at_1: float
    recall_at_3: float
    mrr: float


def load_questions(directory: Path = DATA_DIR) -> list[Question]:
    lines = (directory / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [Question(**json.loads(line)) for line in lines if line.strip()]
    for question in questions:
        if question.split not in SPLITS or {question.lang, question.doc_lang} - {"en", "zh"}:
            raise ValueError(f"bad question in the evaluation set: {question}")
    return questions


def documents(directory: Path = DATA_DIR) -> list[tuple[str, bytes]]:
    """``(file name, content)`` for every document, by name."""
    return [(path.name, path.read_bytes()) for path in sorted((directory / "docs").iterdir())]


def rank(question: Question, hits: Sequence[Hit]) -> int | None:
    """The 1-based rank of the first chunk that answers ``question``; None if none does."""
    return next((i for i, hit in enumerate(hits, 1) if question.answered_by(hit)), None)


def scores(ranks: Iterable[int | None]) -> Scores:
    found = list(ranks)
    n = len(found) or 1
    return Scores(
        count=len(found),
        recall_at_1=sum(r == 1 for r in found if r) / n,
        recall_at_3=sum(r <= 3 for r in found if r) / n,
        mrr=sum(1 / r for r in found if r and r <= DEPTH) / n,
    )


def evaluate(
    retrieve: Callable[[str], Sequence[Hit]], questions: Sequence[Question]
) -> dict[tuple[str, str], Scores]:
    """Scores per ``(group, split)``, plus ``(group, "all")``."""
    ranks: dict[tuple[str, str], list[int | None]] = defaultdict(list)
    for question in questions:
        found = rank(question, retrieve(question.q)[:DEPTH])
        ranks[(question.group, question.split)].append(found)
        ranks[(question.group, "all")].append(found)
    return {key: scores(value) for key, value in ranks.items()}
