"""Intent rules: refuse a *request* for harm, however it is phrased, and let talk about harm pass.

A word list stops only the phrasings in it; a topic word ("诈骗", "poison") also stops every
victim, reporter and teacher. An intent rule needs three things close together:

    ask (教我, 怎么, how do I, help me...)  ->  act (骗, 偷, poison, steal...)  [-> target]

within ``window`` characters, with the ask before the act. An act marked ``needs-target``
("steal", "kill") only counts next to a target ("someone's", "邻居", "a car"), so "steal the
show" and "kill the process" pass. A mention cue (识别, 防范, 被骗, report, avoid...) near the
act turns the request into talk about harm and lets it pass. The file format is described in
``prompts/filters/README.md``; matching runs on ``chat.guards.normalise.intent_view``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from chat.errors import ConfigError
from chat.guards.rule import DEFAULT_REFUSAL, Rule

DEFAULT_WINDOW = 40
ACT_SPAN = 80  # longest text one pattern is expected to match
# Where a word may start: a Latin letter or digit after a non-letter, or any other letter.
_WORD_STARTS = re.compile(r"(?<![a-z0-9])[a-z0-9]|[^\x00-\x7f]")
SECTIONS = ("ask", "act", "target", "mention")


@dataclass(frozen=True)
class Act:
    """One ``[act <category>]`` section: its pattern, and whether it needs a target nearby."""

    category: str
    pattern: re.Pattern[str]
    needs_target: bool
    rule: Rule


@dataclass
class IntentRules:
    """The intent rules of one file (one language); ``check`` finds the first request for harm."""

    name: str
    window: int = DEFAULT_WINDOW
    refusal: str = DEFAULT_REFUSAL
    ask: re.Pattern[str] | None = None
    target: re.Pattern[str] | None = None
    mention: re.Pattern[str] | None = None
    acts: list[Act] = field(default_factory=list)
    _acts: re.Pattern[str] | None = None  # every act in one pattern, group "a<i>" for acts[i]

    @cached_property
    def categories(self) -> frozenset[str]:
        """Every act's category: asked of each file for each message checked."""
        return frozenset(act.category for act in self.acts)

    def check(self, view: str) -> Rule | None:
        if self.ask is None or self._acts is None:
            return None
        # Acts are tried only where one may start: at a word start (any Chinese character), from
        # an ask to ``window`` after it. ``match`` at a few places beats ``search`` over a span.
        match = self._acts.match
        for lo, hi in _spans(self.ask, view, self.window):
            for candidate in _WORD_STARTS.finditer(view, lo, hi + 1):
                m = match(view, candidate.start())
                if m is None:
                    continue
                start, end = m.span()
                act = self.acts[int(m.lastgroup[1:])]
                if act.needs_target and not self._near(self.target, view, lo, end + self.window):
                    continue
                if self._near(self.mention, view, max(0, min(lo, start) - self.window), end + self.window):
                    continue
                return act.rule
        return None

    @staticmethod
    def _near(pattern: re.Pattern[str] | None, view: str, start: int, end: int) -> bool:
        """Whether ``pattern`` has a match starting in ``view[start:end]``."""
        m = pattern.search(view, start, min(len(view), end + ACT_SPAN)) if pattern is not None else None
        return m is not None and m.start() < end


def _spans(ask: re.Pattern[str], view: str, window: int) -> list[tuple[int, int]]:
    """Where acts may start: from each ask's start to ``window`` past its end, overlaps merged."""
    spans: list[tuple[int, int]] = []
    for m in ask.finditer(view):
        lo, hi = m.start(), m.end() + window
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    return spans


def load_intent_file(path: Path) -> IntentRules:
    """Read one ``*.intent`` file (format: ``prompts/filters/README.md``)."""
    rules = IntentRules(name=path.name)
    parts: dict[str, list[str]] = {s: [] for s in ("ask", "target", "mention")}
    acts: list[tuple[str, bool, list[str], str]] = []
    section: list[str] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        where = f"{path.name}:{number}"
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line.lstrip("#").partition(":")
            key, value = key.strip().lower(), value.strip()
            if sep and key == "window":
                if not value.isdigit() or int(value) < 1:
                    raise ConfigError(f"{where}: window must be a positive number of characters")
                rules.window = int(value)
            elif sep and key == "refusal":
                rules.refusal = value
            continue
        header = re.fullmatch(r"\[(\w+)(?:\s+([\w-]+))?(?:\s+(needs-target))?\]", line)
        if header:
            kind, category, needs = header.groups()
            if kind not in SECTIONS or (kind == "act") != bool(category):
                raise ConfigError(f"{where}: unknown section {line} (ask, act <category>, target, mention)")
            if kind == "act":
                acts.append((category, bool(needs), [], where))
                section = acts[-1][2]
            else:
                section = parts[kind]
            continue
        if section is None:
            raise ConfigError(f"{where}: a pattern before any [section]")
        try:
            re.compile(line)
        except re.error as exc:
            raise ConfigError(f"{where}: bad regular expression: {exc}") from None
        section.append(line)
    rules.ask, rules.target, rules.mention = (_compile(parts[k]) for k in ("ask", "target", "mention"))
    for category, needs, patterns, where in acts:
        compiled = _compile(patterns)
        if compiled is not None:
            rule = Rule(f"[act {category}]", category, rules.refusal, where, intent=True)
            rules.acts.append(Act(category, compiled, needs, rule))
    if rules.acts:
        rules._acts = re.compile("|".join(f"(?P<a{i}>{a.pattern.pattern})" for i, a in enumerate(rules.acts)))
    return rules


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
