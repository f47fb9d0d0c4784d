"""One rule line and the refusal it gives: shared by word lists (``rules``) and intent rules
(``intent``), which both build on it."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REFUSAL = "error.input_blocked"


@dataclass(frozen=True)
class Rule:
    """One line of a rule file. ``where`` (file:line) names it in logs; never the matched text.
    ``intent``: an ask-and-act pattern (``chat.guards.intent``), a guess at what a message wants
    that the semantic layer may overrule; phrases and regular expressions are exact."""

    text: str
    category: str
    refusal: str
    where: str
    intent: bool = False
