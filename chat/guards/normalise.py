"""Normalise text before matching, so trivial evasions of a listed word fail.

Two views of a text, both built one character at a time (so a streamed reply normalises the
same way in any chunking, and every normalised character maps back to one original one):

``phrase_view``  for word lists. NFKC, case folding, accents dropped, invisible characters
                 (zero-width, BOM, soft hyphen, control) removed, look-alike letters folded
                 (Cyrillic/Greek, ``0→o 1→l i→l 3→e 4→a 5→s 7→t @→a $→s``), traditional
                 Chinese folded to simplified, and every other non-letter, non-digit
                 character turned into a space. Word lists are matched ignoring those spaces.
``text_view``    for regular expressions. The same without the digit/symbol folding; spaces
                 collapsed, separators between two Chinese characters dropped, and words
                 spelled out letter by letter ("p a s s w o r d") joined again.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable

# Letters that look like Latin ones (after case folding).
HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "к": "k",
        "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x",
        "ь": "b", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ӏ": "l", "һ": "h", "ԛ": "q",
        "ԝ": "w", "ү": "y", "ɡ": "g",
        # Greek
        "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "μ": "u", "ς": "s", "σ": "o",
        # small capitals
        "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j",
        "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t",
        "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
        # Latin letters that NFKD does not take apart
        "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ɑ": "a", "ɩ": "i",
    }
)  # fmt: skip

# Only for word lists: digits and symbols used as letters. "i" and "l" share one form, so
# "k1ll", "ki11" and "kill" all read "klll".
LEET = str.maketrans(
    {"0": "o", "1": "l", "i": "l", "|": "l", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)

# Invisible characters that are not in category Cf: Hangul fillers, braille blank.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800")

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"


def _t2s() -> Callable[[str], str]:
    import opencc

    return opencc.OpenCC("t2s").convert


_convert_lock = threading.Lock()
_t2s_convert: Callable[[str], str] | None = None


def to_simplified(ch: str) -> str:
    """One traditional Chinese character to its simplified form (other characters unchanged)."""
    global _t2s_convert
    if not re.match(f"[{_CJK}]", ch):
        return ch
    with _convert_lock:
        if _t2s_convert is None:
            _t2s_convert = _t2s()
        return _t2s_convert(ch)


def base_char(ch: str) -> str:
    """The first stage both views share: "" for an invisible character, " " for a space."""
    category = unicodedata.category(ch)
    if category in ("Cf", "Cs", "Co", "Cn") or ch in INVISIBLE:
        return ""
    if category == "Cc" or category.startswith("Z"):
        return " "
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", ch).casefold())
    folded = unicodedata.normalize("NFC", "".join(c for c in folded if not unicodedata.combining(c)))
    return "".join(to_simplified(c) for c in folded.translate(HOMOGLYPHS))


def phrase_char(ch: str) -> str:
    return "".join(c if c.isalnum() else " " for c in base_char(ch).translate(LEET))


def text_char(ch: str) -> str:
    return base_char(ch)


class _Table(dict):
    """A ``str.translate`` table filled on first use of each character (the lookup runs in C).

    ``multi`` collects the characters seen so far that do not normalise to exactly one
    character, so a streamed chunk without any maps positions one to one.
    """

    def __init__(self, fn: Callable[[str], str], multi: set[str]) -> None:
        super().__init__()
        self._fn = fn
        self._multi = multi

    def __missing__(self, codepoint: int) -> str:
        ch = chr(codepoint)
        value = self._fn(ch)
        if len(value) != 1:
            self._multi.add(ch)
        self[codepoint] = value
        return value


MULTI: set[str] = set()  # characters whose phrase view is not one character (after first use)
PHRASE_TABLE = _Table(phrase_char, MULTI)
TEXT_TABLE = _Table(text_char, set())


def phrase_view(text: str) -> str:
    return text.translate(PHRASE_TABLE)


def compact(text: str) -> str:
    """A word-list entry in matching form: its phrase view without spaces."""
    return phrase_view(text).replace(" ", "")


_SPACES = re.compile(r"\s+")
_CJK_GAP = re.compile(f"(?<=[{_CJK}])[\\W_]+(?=[{_CJK}])")
_JOINERS = r"[ .\-_*·•|/\\~+,]"
_SPELLED_OUT = re.compile(rf"(?<![^\W_])(?:[a-z0-9]{_JOINERS}{{1,3}}){{2,}}[a-z0-9](?![^\W_])")
_JOINER = re.compile(_JOINERS)


def text_view(text: str) -> str:
    """The text that regular-expression rules are matched against (see the module docstring)."""
    text = _SPACES.sub(" ", text.translate(TEXT_TABLE)).strip()
    text = _CJK_GAP.sub("", text)
    return _SPELLED_OUT.sub(lambda m: _JOINER.sub("", m.group()), text)


# Punctuation inside a Latin word ("st.eal", "p-o-i-s-o-n", "someone's") is dropped, so a
# word split to dodge a rule reads whole again; Chinese gaps are already closed.
_INSIDE_WORD = re.compile(r"(?<=[a-z])[.\-_*·•|~+'’`^]+(?=[a-z])")
# A word spelled out with one separator, the same each time ("s t e a l", "k.i.l.l").
_SPELLED = re.compile(rf"(?<!\S)(?:[a-z0-9](?P<sep>{_JOINERS}))(?:[a-z0-9](?P=sep))+[a-z0-9](?![^\W_])")
# "how can I s t e a l a car": the lone "i" after a modal and a trailing "a" are words of their own.
_MODAL = re.compile(r"(?:^|\s)(?:do|can|could|would|should|will|did|shall|may|might|must|then|and)\s$")
_BEFORE_A = re.compile(r"(?:^|\s)(?:write|make|build|get|buy|find|is|be|with|for|of|on|in|me)\s$")


def _rejoin(match: re.Match[str]) -> str:
    letters = match.group().replace(match["sep"], "")
    before = match.string[max(0, match.start() - 12) : match.start()]
    head = tail = ""
    if len(letters) >= 5 and match["sep"] == " ":
        if (letters[0] == "i" and _MODAL.search(before)) or (letters[0] == "a" and _BEFORE_A.search(before)):
            head, letters = letters[0] + " ", letters[1:]
        if letters[-1] in "ai" and len(letters) >= 5:
            letters, tail = letters[:-1], " " + letters[-1]
    return head + letters + tail


def intent_view(text: str) -> str:
    """The text intent rules match against (see ``chat.guards.intent``).

    Like ``text_view``, but a spelled-out word is joined only when one separator repeats, so
    "s t e a l my bike" reads "steal my bike", and punctuation inside words is dropped.
    """
    text = _SPACES.sub(" ", text.translate(TEXT_TABLE)).strip()
    text = _CJK_GAP.sub("", text)
    return _SPELLED.sub(_rejoin, _INSIDE_WORD.sub("", text))
