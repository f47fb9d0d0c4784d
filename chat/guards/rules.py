"""Filter rules: plain files of phrases and regular expressions, compiled for fast matching.

The file format is described in ``prompts/filters/README.md``. Word lists compile into one
trie-shaped regular expression over the phrase view (``chat.guards.normalise``), in which any
run of spaces may sit between two characters of a phrase, and a phrase that starts or ends
with a Latin letter or digit must start or end on a word boundary: so "p.a.s.s.w.o.r.d"
matches "password" but "scampi" does not match "scam".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chat.errors import ConfigError
from chat.guards.intent import IntentRules, load_intent_file
from chat.guards.normalise import compact, intent_view, phrase_view, text_view
from chat.guards.rule import DEFAULT_REFUSAL, Rule

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "prompts" / "filters"
SCOPES = ("input", "output")

# In a phrase view letters are folded to a-z where they can be (accents, look-alikes). A phrase
# that starts or ends with a Latin letter or digit needs a word boundary there; Chinese ones do
# not (there are no spaces between Chinese words). A small class: quick to compile and match.
WORDY = r"[a-z0-9]"
_WORDY = re.compile(WORDY)
_END = ""  # trie key marking the end of a phrase


@dataclass(frozen=True)
class Hit:
    rule: Rule
    start: int
    end: int


@dataclass
class RuleFile:
    kind: str = "block"  # or "allow"
    scopes: tuple[str, ...] = ("input",)
    refusal: str = DEFAULT_REFUSAL
    rules: list[Rule] = field(default_factory=list)


def parse_rule_file(path: Path) -> RuleFile:
    """Read one rule file: ``# key: value`` directives, ``#`` comments, one rule a line."""
    parsed = RuleFile()
    category = path.name.split(".")[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith("#"):
            key, sep, value = line.lstrip("#").partition(":")
            key, value = key.strip().lower(), value.strip()
            if not sep or key not in ("kind", "scope", "refusal"):
                continue
            if key == "kind":
                if value not in ("block", "allow"):
                    raise ConfigError(f"{path.name}:{number}: kind must be block or allow, got {value!r}")
                parsed.kind = value
            elif key == "scope":
                scopes = tuple(s for s in re.split(r"[\s,]+", value) if s)
                if not scopes or any(s not in SCOPES for s in scopes):
                    raise ConfigError(f"{path.name}:{number}: scope must be input and/or output")
                parsed.scopes = scopes
            else:
                parsed.refusal = value
            continue
        if line:
            parsed.rules.append(Rule(line, category, parsed.refusal, f"{path.name}:{number}"))
    # a refusal directive applies to the whole file, wherever it stands
    parsed.rules = [Rule(r.text, r.category, parsed.refusal, r.where) for r in parsed.rules]
    return parsed


class PhraseMatcher:
    """Finds listed phrases in a phrase view, and tells whether a text's end may start one."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: dict[str, Rule] = {}
        for rule in rules:
            key = compact(rule.text)
            if key:
                self.rules.setdefault(key, rule)
        self.max_len = max((len(k) for k in self.rules), default=0)
        self.min_len = min((len(k) for k in self.rules), default=1)
        trie: dict = {}
        for key in self.rules:
            node = trie
            for ch in key:
                node = node.setdefault(ch, {})
            node[_END] = {}
        never = "(?!)"
        # Every alternative starts with a literal, so the regex engine skips ahead on its own.
        self.pattern = re.compile("|".join(_branch(ch, trie[ch], root=True) for ch in sorted(trie)) or never)
        prefix = "|".join(re.escape(ch) + _prefix_rest(trie[ch]) for ch in sorted(trie))
        self.prefix_pattern = re.compile(f"(?:{prefix}) *\\Z" if prefix else never)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, matched: str) -> Rule:
        return self.rules[matched.replace(" ", "")]


def _branch(ch: str, node: dict, *, root: bool = False) -> str:
    """``ch``, then the rest of the trie below it; a phrase's ends check their word boundary."""
    alts = [f" *{_branch(c, node[c])}" for c in sorted(node) if c != _END]
    if _END in node:  # after the longer phrases, so the longest match is tried first
        alts.append(f"(?!{WORDY})" if _WORDY.match(ch) else "")
    rest = alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"
    start = f"(?<!{WORDY}.)" if root and _WORDY.match(ch) else ""  # not preceded by a letter
    return re.escape(ch) + start + rest


def _prefix_rest(node: dict) -> str:
    children = [c for c in sorted(node) if c != _END]
    if not children:
        return ""
    body = "|".join(re.escape(c) + _prefix_rest(node[c]) for c in children)
    return f"(?: *(?:{body}))?"


class Matching:
    """Block phrases minus allow phrases, over a phrase view, whole or growing (streamed)."""

    def __init__(self, block: PhraseMatcher, allow: PhraseMatcher) -> None:
        self.block = block
        self.allow = allow
        # how far before a hit an allow phrase may start (generous: spaces may pad it)
        self.allow_window = 4 * allow.max_len + 16

    def first_hit(self, view: str, pos: int = 0, *, final: bool = True) -> tuple[Hit | None, int | None]:
        """The first blocked phrase at or after ``pos``, or where an undecided one starts.

        Not ``final`` (more text may follow): a hit whose end needs a word boundary not yet
        seen, or that an allow phrase still being written may cover, is undecided.
        """
        if not self.block:
            return None, None
        while True:
            m = self.block.pattern.search(view, pos)
            if m is None:
                return None, None
            start, end = m.span()
            if not final and end == len(view) and _WORDY.match(view[end - 1]):
                return None, start
            allowed, undecided = self._allowed(view, start, end, final)
            if undecided:
                return None, start
            if not allowed:
                return Hit(self.block.rule_for(m.group()), start, end), None
            pos = start + 1

    def _allowed(self, view: str, start: int, end: int, final: bool) -> tuple[bool, bool]:
        if not self.allow:
            return False, False
        low = max(0, start - self.allow_window)
        pos = low
        while (a := self.allow.pattern.search(view, pos)) is not None and a.start() < end:
            if a.end() > start:
                if not final and a.end() == len(view) and _WORDY.match(view[-1]):
                    return False, True
                return True, False
            pos = a.start() + 1
        if not final:
            partial = self.allow.prefix_pattern.search(view, low)
            if partial is not None and partial.start() < end:
                return False, True
        return False, False

    def hold_from(self, view: str, pos: int) -> int | None:
        """Where, at or after ``pos``, the end of ``view`` may be the start of a listed phrase."""
        m = self.block.prefix_pattern.search(view, pos) if self.block else None
        return m.start() if m else None


@dataclass
class RuleSet:
    """Everything loaded from a rules directory."""

    input: Matching
    output: Matching
    regexes: list[tuple[re.Pattern[str], Rule]]
    intents: list[IntentRules] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path | None = None) -> RuleSet:

        directory = DEFAULT_DIR if directory is None else Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"filter rules directory {directory} does not exist")
        block: dict[str, list[Rule]] = {s: [] for s in SCOPES}
        allow: dict[str, list[Rule]] = {s: [] for s in SCOPES}
        regexes: list[tuple[re.Pattern[str], Rule]] = []
        intents: list[IntentRules] = []
        for path in sorted(directory.iterdir()):
            if path.suffix == ".intent" and path.is_file():
                intents.append(load_intent_file(path))
                continue
            if path.suffix not in (".txt", ".regex") or not path.is_file():
                continue
            parsed = parse_rule_file(path)
            if path.suffix == ".regex":
                if parsed.kind != "block" or parsed.scopes != ("input",):
                    raise ConfigError(f"{path.name}: regular expressions are input block rules only")
                for rule in parsed.rules:
                    try:
                        regexes.append((re.compile(rule.text), rule))
                    except re.error as exc:
                        raise ConfigError(f"{rule.where}: bad regular expression: {exc}") from None
                continue
            target = allow if parsed.kind == "allow" else block
            for scope in parsed.scopes:
                target[scope].extend(parsed.rules)
        return cls(
            input=Matching(PhraseMatcher(block["input"]), PhraseMatcher(allow["input"])),
            output=Matching(PhraseMatcher(block["output"]), PhraseMatcher(allow["output"])),
            regexes=regexes,
            intents=intents,
        )

    @classmethod
    def empty(cls) -> RuleSet:
        none = PhraseMatcher(())
        return cls(input=Matching(none, none), output=Matching(none, none), regexes=[])

    def check_input(
        self, text: str, *, first: frozenset[str] = frozenset(), skip: frozenset[str] = frozenset()
    ) -> Rule | None:
        """The first rule ``text`` breaks, or None (``input_hits``)."""
        return next(self.input_hits(text, first=first, skip=skip), None)

    def input_hits(
        self, text: str, *, first: frozenset[str] = frozenset(), skip: frozenset[str] = frozenset()
    ) -> Iterator[Rule]:
        """The rules ``text`` breaks, lazily: the first hit of the word lists, each regular
        expression's, each intent file's. Intent files of the ``first`` categories are tried before
        every other rule (self-harm: care comes before a refusal), those of the ``skip`` categories
        not at all (what a person says of themselves, not another's words)."""
        early = [i for i in self.intents if i.categories & first and not i.categories <= skip]
        late = [i for i in self.intents if not i.categories & first and not i.categories <= skip]
        view = intent_view(text) if self.intents else ""
        for intent in early:
            if (rule := intent.check(view)) is not None:
                yield rule
        hit, _ = self.input.first_hit(phrase_view(text))
        if hit is not None:
            yield hit.rule
        if self.regexes:
            shown = text_view(text)
            for pattern, rule in self.regexes:
                if pattern.search(shown):
                    yield rule
        for intent in late:
            if (rule := intent.check(view)) is not None:
                yield rule
