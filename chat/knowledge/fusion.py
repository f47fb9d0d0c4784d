"""Reciprocal rank fusion: one ranking from the full-text and the embedding rankings.

Scores from BM25 and cosine similarity are on different scales; ranks are not. Each item gets
``sum(1 / (k + rank))`` over the rankings it appears in (rank from 1), as in Cormack, Clarke and
Buettcher (SIGIR 2009), whose ``k = 60`` is the default. An item found by both rankings beats
one found by a single ranking at the same rank.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

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
