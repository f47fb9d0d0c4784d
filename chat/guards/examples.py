"""The semantic guard's labelled examples and replies: plain files an operator edits by hand.

``prompts/filters/examples/`` holds one file per category and label, one message a line::

    fraud_scams.request.txt     requests to do harm (refused with the category's reply)
    fraud_scams.mention.txt     talk about the topic: news, prevention, teaching, fiction (allowed)
    general.benign.txt          everyday messages (allowed); any category name may hold benign ones
    guard.toml                  each category's reply in English and Chinese, the help lines, the
                                classifier's threshold and below what score it overrules an
                                intent rule

Blank lines and lines starting with ``#`` are skipped. A file that breaks these rules stops the
app at start-up with a ``ConfigError`` naming the file and line, like a broken rule file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from chat.errors import ConfigError
from chat.guards.rules import DEFAULT_DIR as FILTERS_DIR

DEFAULT_DIR = FILTERS_DIR / "examples"
SETTINGS_FILE = "guard.toml"
DEFAULT_THRESHOLD = 0.5
DEFAULT_OVERRULE_INTENT_BELOW = 0.0  # without the setting, intent rules are never overruled
LABELS = ("request", "mention", "benign")
LANGS = ("en", "zh")
MAX_CHARS = 1000  # a longer line is a paste gone wrong, not an example
MIN_REQUESTS = 3  # per category: fewer cannot teach the classifier what the category asks
_NAME = re.compile(r"^(?P<category>[a-z][a-z0-9_]*)\.(?P<label>[a-z]+)\.txt$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Examples:
    """A directory's examples, each category's reply and the classifier's settings, as loaded."""

    examples: list[Example]
    replies: dict[str, CategoryReply]
    threshold: float
    overrule_intent_below: float = DEFAULT_OVERRULE_INTENT_BELOW


@dataclass(frozen=True)
class Example:
    """One labelled message; ``where`` (file:line) names it in errors and reports."""

    text: str
    label: str
    category: str
    lang: str
    where: str


@dataclass(frozen=True)
class CategoryReply:
    """What the user reads when the guard stops a message of this category."""

    category: str
    text: dict[str, str]
    care: bool = False  # a caring reply with help lines, not a refusal
    needs: re.Pattern[str] | None = None  # refused only when the message's text view matches


def language(text: str) -> str:
    """ "zh" when the text has Chinese characters, else "en" (a mixed message counts as zh)."""
    return "zh" if _CJK.search(text) else "en"


def load_examples(directory: Path | None = None) -> Examples:
    """Every example, every category's reply and the classifier's settings in ``directory``, checked."""
    directory = DEFAULT_DIR if directory is None else Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"guard examples directory {directory} does not exist")
    settings = _read_settings(directory / SETTINGS_FILE)
    replies = _replies(settings)
    examples: list[Example] = []
    seen: dict[str, Example] = {}
    for path in sorted(directory.glob("*.txt")):
        for example in _read_file(path, replies):
            first = seen.setdefault(example.text.casefold(), example)
            if first.label != example.label:
                raise ConfigError(f"{example.where}: the same message is in {first.where} as a {first.label}")
            examples.append(example)
    for category in replies:
        count = sum(1 for e in examples if e.category == category and e.label == "request")
        if count < MIN_REQUESTS:
            raise ConfigError(
                f"{category}.request.txt: category {category} needs at least "
                f"{MIN_REQUESTS} request examples, found {count}"
            )
    threshold = _score(settings, "threshold", DEFAULT_THRESHOLD)
    overrule = _score(settings, "overrule_intent_below", DEFAULT_OVERRULE_INTENT_BELOW, zero=True)
    if overrule >= threshold:
        raise ConfigError(
            f"{SETTINGS_FILE}: [classifier] overrule_intent_below must be under the threshold ({threshold})"
        )
    return Examples(examples, replies, threshold, overrule)


def load_replies(directory: Path) -> dict[str, CategoryReply]:
    """Each category's reply from ``directory``'s guard.toml alone (none when there is no such
    file): what a rule file named after a category answers with, the semantic layer on or off."""
    path = Path(directory) / SETTINGS_FILE
    return _replies(_read_settings(path)) if path.is_file() else {}


def _read_file(path: Path, replies: dict[str, CategoryReply]) -> list[Example]:
    name = _NAME.match(path.name)
    if name is None or name["label"] not in LABELS:
        raise ConfigError(
            f"{path.name}: an examples file is named <category>.<label>.txt, label one of {', '.join(LABELS)}"
        )
    category, label = name["category"], name["label"]
    if label != "benign" and category not in replies:
        raise ConfigError(f"{path.name}: category {category} has no reply in {SETTINGS_FILE}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path.name}:{line}: not UTF-8 text") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_CHARS:
            raise ConfigError(f"{path.name}:{number}: a message over {MAX_CHARS} characters")
        out.append(Example(line, label, category, language(line), f"{path.name}:{number}"))
    return out


def _read_settings(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path.parent.name}/{path.name} is missing: each category needs its reply there")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: {exc}") from None  # the message gives the line and column


def _score(settings: dict, key: str, default: float, *, zero: bool = False) -> float:
    """A probability setting of the [classifier] table: under 1, and over 0 unless ``zero``."""
    value = settings.get("classifier", {}).get(key, default)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 <= value < 1 or (value == 0 and not zero):
        bounds = "from 0 up to 1 (not 1)" if zero else "between 0 and 1"
        raise ConfigError(f"{SETTINGS_FILE}: [classifier] {key} must be a number {bounds}")
    return float(value)


def _replies(settings: dict) -> dict[str, CategoryReply]:
    """Each category's reply, help lines filled in: every table but [classifier] and [help_lines]."""
    help_lines = settings.get("help_lines", {})
    replies = {}
    for category, table in settings.items():
        if category in ("classifier", "help_lines"):
            continue
        if not isinstance(table, dict) or not all(isinstance(table.get(lang), str) for lang in LANGS):
            raise ConfigError(f"{SETTINGS_FILE}: [{category}] needs an en and a zh text")
        care = bool(table.get("care", False))
        text = {lang: table[lang] for lang in LANGS}
        if care:
            if not all(isinstance(help_lines.get(lang), str) for lang in LANGS):
                raise ConfigError(f"{SETTINGS_FILE}: [help_lines] needs an en and a zh text for [{category}]")
            text = {lang: text[lang].replace("{help_lines}", help_lines[lang]) for lang in LANGS}
        replies[category] = CategoryReply(category, text, care, _needs(category, table.get("needs")))
    if not replies:
        raise ConfigError(f"{SETTINGS_FILE}: no category")
    return replies


def _needs(category: str, value: object) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{SETTINGS_FILE}: [{category}] needs must be a regular expression")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ConfigError(f"{SETTINGS_FILE}: [{category}] needs is a bad regular expression: {exc}") from None


__all__ = [
    "DEFAULT_DIR",
    "LABELS",
    "CategoryReply",
    "Example",
    "Examples",
    "language",
    "load_examples",
    "load_replies",
]
