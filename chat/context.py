"""Fit a conversation into a context window by counting real tokens.

The system prompt and the newest message are always kept; the oldest turns go first, and a
turn is dropped whole (from a user message up to the next one) so roles keep alternating.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chat.errors import ContextOverflow
from chat.messages import Message

TokenCounter = Callable[[Sequence[Message]], int]


@dataclass(frozen=True)
class FittedPrompt:
    messages: tuple[Message, ...]
    prompt_tokens: int
    dropped: int  # messages left out


def fit_messages(
    messages: Sequence[Message], *, window: int, reserve: int, count: TokenCounter
) -> FittedPrompt:
    """Keep as much recent history as fits in ``window - reserve`` tokens.

    Raises ``ContextOverflow`` when the system prompt plus the newest message alone do not fit.
    """
    budget = window - reserve
    n_system = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    system, history, newest = messages[:n_system], messages[n_system:-1], messages[-1:]

    # Candidate cut points: each start of a user turn, and "drop everything".
    starts = [i for i, m in enumerate(history) if m.role == "user" and i > 0] + [len(history)]
    starts = [0, *starts] if history else [0]

    def build(cut: int) -> tuple[Message, ...]:
        return (*system, *history[cut:], *newest)

    tokens = count(build(0))
    if tokens <= budget:
        return FittedPrompt(build(0), tokens, 0)

    minimal = build(len(history))
    minimal_tokens = count(minimal)
    if minimal_tokens > budget:
        raise ContextOverflow(
            f"prompt needs {minimal_tokens} tokens, {budget} available",
            needed=minimal_tokens,
            available=max(budget, 0),
            reserved=reserve,
        )
    # Token count falls as the cut moves later: binary-search the earliest cut that fits.
    lo, hi = 1, len(starts) - 1  # starts[hi] is known to fit, starts[0] is known not to
    while lo < hi:
        mid = (lo + hi) // 2
        if count(build(starts[mid])) <= budget:
            hi = mid
        else:
            lo = mid + 1
    fitted = build(starts[hi])
    return FittedPrompt(fitted, count(fitted), starts[hi])
