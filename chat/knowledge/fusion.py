"""Reciprocal rank fusion: one ranking from the full-text and the embedding rankings.

``fuse`` is what the knowledge base calls; ``reciprocal_rank_fusion`` is the arithmetic.

Scores from BM25 and cosine similarity are on different scales; ranks are not. Each item gets
``sum(1 / (k + rank))`` over the rankings it appears in (rank from 1), as in Cormack, Clarke and
Buettcher (SIGIR 2009), whose ``k = 60`` is the default. An item found by both rankings beats
one found by a single ranking at the same rank.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from chat.i18n.language import chinese_share

K = 60

Item = TypeVar("Item", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Item]], k: int = K) -> list[tuple[Item, float]]:
    """``(item, score)`` best first; ties keep the order in which items were first seen.

    An item listed twice in one ranking counts at its best rank there.
    """
    if k < 0:
        raise ValueError(f"k must be 0 or more, got {k}")
    scores: dict[Item, float] = {}
    for ranking in rankings:
        seen: set[Item] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])  # stable: first seen wins ties


def fuse(
    fulltext: Sequence[Item],
    dense: Sequence[Item],
    is_chinese: Callable[[Item], bool],
    question: str,
    *,
    depth: int,
    k: int = K,
) -> list[tuple[Item, float]]:
    """The knowledge base's fused ranking: full text, the embedding ranking, and the embedding
    ranking of the chunks in the other language than ``question``.

    ``dense`` is every chunk by similarity (best first), ``is_chinese`` says a chunk's language.
    Full text finds nothing real across languages, yet its same-language matches would share
    the top ranks with the embeddings' answer; the third ranking gives a cross-language answer
    the second vote that a same-language answer gets from full text. On the evaluation set with
    multilingual-e5-small (centred): cross-language recall@3 0.56 -> 0.88 (tune), 0.35 -> 0.80
    (held-out) against fusing the first two alone; same-language recall unchanged (1.00).
    """
    asks_chinese = chinese_share(question) >= 0.5
    other = [item for item in dense if is_chinese(item) != asks_chinese][:depth]
    return reciprocal_rank_fusion([fulltext[:depth], dense[:depth], other], k)
