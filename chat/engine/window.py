"""Fit a conversation and its reply into a context window by counting real tokens.

The system prompt and the newest message are always kept; the oldest turns go first, and a
turn is dropped whole (from a user message up to the next one) so roles keep alternating.
System notes right after the system prompt (a summary of earlier turns, the user's profile)
outrank history: they go only when even the system prompt, the notes and the newest message
leave no room, the last note first (``notes_dropped``).
When the window is smaller than the reply the user asked for, the reply budget shrinks to what
the window leaves (at most half of it when history competes), instead of refusing.

Work does not grow with the conversation: the whole prompt is counted once (the local backend
renders and tokenizes it once, for this count and for generation), and when turns must go, the
cut is chosen from per-message counts that the backend computes once per distinct message. Only
the chosen prompt is counted again, exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import accumulate

from chat.errors import ContextOverflow
from chat.messages import Message, system_end

TokenCounter = Callable[[Sequence[Message]], int]
MessageCounter = Callable[[Message], int]
MIN_REPLY_TOKENS = 16  # below this a reply is not worth starting: the message is refused


@dataclass(frozen=True)
class FittedPrompt:
    messages: tuple[Message, ...]
    prompt_tokens: int
    dropped: int  # history messages left out
    reply_tokens: int  # max new tokens the window leaves for the reply
    notes_dropped: int = 0  # system notes after the system prompt left out


def fit_messages(
    messages: Sequence[Message],
    *,
    window: int,
    max_new_tokens: int,
    count: TokenCounter,
    cost: MessageCounter | None = None,
) -> FittedPrompt:
    """Keep as much recent history as fits beside the reply in ``window`` tokens.

    ``count`` gives a prompt's exact length; ``cost`` one message's share of it (memoised by
    the backend). Raises ``ContextOverflow`` when the system prompt and the newest message leave
    no room for even a short reply.
    """
    n_system = system_end(messages)
    # The newest turn is kept whole: the user's message and any tool calls and results after it.
    users = [i for i, m in enumerate(messages) if m.role == "user" and i >= n_system]
    start = users[-1] if users else len(messages) - 1
    system, history, newest = (
        tuple(messages[:n_system]),
        tuple(messages[n_system:start]),
        tuple(messages[start:]),
    )
    everything = (*system, *history, *newest)

    full = count(everything)
    if full + max_new_tokens <= window:
        return FittedPrompt(everything, full, 0, max_new_tokens)
    reserve = min(max_new_tokens, max(window // 2, window - full))
    budget = window - reserve
    if full <= budget:
        return FittedPrompt(everything, full, 0, reserve)

    system, notes_dropped = _fitting_notes(system, newest, budget, count)
    minimal = (*system, *newest)
    minimal_tokens = count(minimal)
    if minimal_tokens + MIN_REPLY_TOKENS > window:
        raise ContextOverflow(
            f"prompt needs {minimal_tokens} tokens, {window - MIN_REPLY_TOKENS} available",
            needed=minimal_tokens,
            available=max(window - MIN_REPLY_TOKENS, 0),
            reserved=MIN_REPLY_TOKENS,
        )
    if minimal_tokens > budget:  # the newest message alone is long: it gets the room, not the reply
        return FittedPrompt(minimal, minimal_tokens, len(history), window - minimal_tokens, notes_dropped)
    if not notes_dropped:
        return _trim(system, history, newest, full, minimal_tokens, budget, reserve, count, cost)
    full = count((*system, *history, *newest))  # the scale in _trim must not count dropped notes
    fitted = _trim(system, history, newest, full, minimal_tokens, budget, reserve, count, cost)
    return replace(fitted, notes_dropped=notes_dropped)


def _fitting_notes(
    system: tuple[Message, ...], newest: tuple[Message, ...], budget: int, count: TokenCounter
) -> tuple[tuple[Message, ...], int]:
    """The system prompt with as many of its notes as fit beside the newest message in
    ``budget`` (the last note goes first), and how many were left out."""
    for kept in range(len(system), 1, -1):
        if count((*system[:kept], *newest)) <= budget:
            return system[:kept], len(system) - kept
    return system[:1], max(len(system) - 1, 0)


def _trim(
    system: tuple[Message, ...],
    history: tuple[Message, ...],
    newest: tuple[Message, ...],
    full: int,
    minimal: int,
    budget: int,
    reserve: int,
    count: TokenCounter,
    cost: MessageCounter | None,
) -> FittedPrompt:
    """The earliest turn boundary whose prompt fits ``budget``, estimated then checked exactly."""
    costs = [cost(m) if cost else count([m]) for m in history]
    # Per-message counts miss the template's joins; scale them to the exact history size.
    total = sum(costs)
    scale = (full - minimal) / total if total > 0 else 1.0
    suffix = list(accumulate(reversed(costs)))[::-1] + [0]  # suffix[i]: tokens of history[i:]
    cuts = [i for i, m in enumerate(history) if m.role == "user" and i > 0] + [len(history)]
    for position, cut in enumerate(cuts):
        if minimal + scale * suffix[cut] > budget and cut != len(history):
            continue
        for later in cuts[position:]:  # the estimate may be short by a join: confirm exactly
            prompt = (*system, *history[later:], *newest)
            tokens = minimal if later == len(history) else count(prompt)
            if tokens <= budget:
                return FittedPrompt(prompt, tokens, later, reserve)
    raise AssertionError("the minimal prompt fits, so some cut must")  # pragma: no cover


REFIT_SHRINK = 0.75  # each re-fit without the provider's figures keeps this share of the prompt


def smaller_window(window: int, prompt_tokens: int, reserve: int, exc: ContextOverflow) -> int:
    """The window (in the backend's estimated tokens) to re-fit into after a provider overflow.

    With the provider's limit and real prompt size, scale the estimate to fit (5% margin);
    otherwise keep ``REFIT_SHRINK`` of the prompt. Always smaller than before.
    """
    prompt_budget = prompt_tokens * REFIT_SHRINK
    limit, real = exc.fields.get("limit"), exc.fields.get("prompt_tokens")
    if isinstance(limit, int) and isinstance(real, int) and real > 0 and prompt_tokens > 0:
        scaled = (limit - reserve) * prompt_tokens / real * 0.95
        prompt_budget = min(scaled, prompt_tokens * 0.95)
    return min(window - 1, reserve + max(int(prompt_budget), 0))


def final_overflow(exc: ContextOverflow, needed: int, window: int, reserve: int) -> ContextOverflow:
    """The user-facing overflow after the re-fits ran out, with figures the message can show."""
    if "needed" in exc.fields:
        return exc
    return ContextOverflow(str(exc), needed=needed, available=max(window - reserve, 0), reserved=reserve)
