"""Mask credentials in a streamed reply: a password, a verification code, an API key, a token.

A model can repeat a secret from its context or make up a plausible one; either way it must not
reach the screen, the cache or a log. The value after a credential's name ("password: hunter2",
"验证码是 482913") and well-known key formats ("sk-...", "ghp_...") are replaced by ``MASK``.
Text that may still turn into a credential (a name whose value has not arrived, the start of a
key) is held back until it is decided, so a secret split across chunks is masked too.
"""

from __future__ import annotations

import re

from chat.engine import OutputFilter

MASK = "••••••"


_NAMES = (
    r"password|passcode|passphrase|passwd|pin(?: code)?|otp|one[ -]?time (?:code|password)"
    r"|verification code|security code|auth(?:entication)? code|2fa code|login code|sms code"
    r"|api[ _-]?key|access[ _-]?key|secret(?: key)?|(?:access |auth |bearer |api )?token"
    r"|密码|口令|验证码|校验码|动态码|短信码|安全码|确认码|密钥|秘钥|令牌"
)
_NAMED = re.compile(
    rf"(?<![A-Za-z0-9])(?P<name>{_NAMES})(?![A-Za-z])[ \t]*(?:is|was|are|=|:|：|是|为|為)?[ \t]*[\"'“`]?"
    r"(?P<value>[A-Za-z0-9!@#$%^&*._+\-/=]{3,}[A-Za-z0-9!@#$%^&*_+\-/=])",
    re.IGNORECASE,
)
_KEYED_NAMES = re.compile(r"key|secret|token|密钥|秘钥|令牌", re.IGNORECASE)
_FORMATS = re.compile(
    r"(?<![A-Za-z0-9])(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}"
    r"|xox[bpas]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
# The streaming checks run on the lower-cased end of the reply (ASCII only, so positions hold)
# with patterns that start with a literal: the regex engine then skips ahead on its own.
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NAME_SCAN = re.compile(f"(?:{_NAMES})")
_VALUE_SO_FAR = re.compile(
    r"[ \t]*(?:is|was|are|=|:|：|是|为|為)?[ \t]*[\"'“`]?[A-Za-z0-9!@#$%^&*._+\-/=]*\Z"
)
_KEY_START = re.compile(r"(?:sk-|gh[pousr]_|akia|xox[bpas]-|eyj)[a-z0-9_.\-]*\Z")
_SCAN_BACK = 72  # characters of the reply's end that can hold an undecided name and value
_WORDS = (  # credential names, multi-word ones whole: "api " may still become "api key"
    *("password", "passcode", "passphrase", "verification code", "security code", "authentication code"),
    *("api key", "api_key", "api-key", "apikey", "access key", "secret key", "pin code", "one-time code"),
    *("one time code", "one-time password", "2fa code", "sms code", "login code", "auth code"),
    *("access token", "auth token", "api token", "bearer token", "token"),
)
_STARTS = ("sk-", "ghp_", "akia", "xoxb-", "eyj", "pin", "otp", "api", "密码", "验证码", "密钥", "令牌")
# Ends of the buffer that may be the start of a name or a key format: held until decided.
_PREFIXES = frozenset(w[:k] for w in (*_WORDS, *_STARTS) for k in range(1, len(w)))
_LONGEST_PREFIX = max(map(len, _PREFIXES))
_WORD_START_AT = re.compile(r"(?<![a-z0-9])[a-z0-9]|[^\x00-\x7f]")
# Characters a credential's name or a key can begin with, in either case.
_FIRST = frozenset(
    c
    for w in (*_WORDS, *_STARTS, "passwd", "otp", "one", "login", "sms", "2fa", "口令")
    for c in (w[0], w[0].upper())
)
_FIRST |= frozenset("校动短安确秘令口")
_WORD_START = re.compile(
    "(?<![a-z0-9])[" + re.escape("".join(sorted(c for c in _FIRST if not c.isupper()))) + "]"
)
_DECIDE_WITHIN = 32  # characters after a credential's name in which its value may still arrive


def _is_secret(match: re.Match[str]) -> bool:
    value = match["value"]
    if any(c.isdigit() for c in value):
        return True
    return bool(_KEYED_NAMES.search(match["name"])) and len(value) >= 12


def mask_secrets(text: str) -> str:
    """``text`` with every credential value replaced by ``MASK``."""
    text = _FORMATS.sub(MASK, text)

    def named(m: re.Match[str]) -> str:
        if not _is_secret(m):
            return m.group()
        return m.group()[: m.start("value") - m.start()] + MASK

    return _NAMED.sub(named, text)


class SecretMask:
    """One reply's output filter that masks credentials in what ``inner`` (if any) releases.

    Not thread-safe: one per reply. Wrapping the phrase filter directly, rather than chaining
    two filters, saves a call per streamed token.
    """

    def __init__(self, inner: OutputFilter | None = None) -> None:
        self._inner = inner
        self._pending = ""
        self._after_word = False  # the last released character was a Latin letter or digit

    def feed(self, text: str) -> str:
        if self._inner is not None:
            text = self._inner.feed(text)
            if not text:
                return ""
        if not self._pending and (_FIRST.isdisjoint(text) or not self._may_begin(text)):
            if text:
                self._after_word = text[-1] in _ALNUM
            return text  # nothing held and no credential can begin here: the common case
        self._pending += text
        cut = self._undecided_from(self._pending)
        released, self._pending = self._pending[:cut], self._pending[cut:]
        if released:
            self._after_word = _wordy(released[-1])
        return mask_secrets(released)

    def _may_begin(self, text: str) -> bool:
        """Whether a name or key may begin in ``text``: a word starting with one of their letters."""
        m = _WORD_START.search(text.translate(_LOWER))
        if m is not None and m.start() == 0 and self._after_word:
            m = _WORD_START.search(text.translate(_LOWER), 1)
        return m is not None

    def flush(self) -> str:
        tail = self._inner.flush() if self._inner is not None else ""
        released, self._pending = self._pending + tail, ""
        return mask_secrets(released)

    @staticmethod
    def _undecided_from(text: str) -> int:
        """Where the part of ``text`` that may still become (part of) a credential starts."""
        lo = max(0, len(text) - _SCAN_BACK)
        tail = text[lo:].translate(_LOWER)
        cut = len(tail)
        # a name whose value may still be arriving
        for m in _NAME_SCAN.finditer(tail):
            start, end = m.span()
            if (start and _wordy(tail[start - 1])) or (
                end < len(tail) and tail[end].isascii() and tail[end].isalpha()
            ):
                continue
            if len(tail) - end <= _DECIDE_WITHIN and _VALUE_SO_FAR.match(tail, end):
                cut = start
                break
        # a key format that may still be growing (keys hold no spaces: look at the last word)
        word = max(tail.rfind(" "), tail.rfind("\n")) + 1
        key = _KEY_START.search(tail, word)
        if key is not None and not (key.start() and _wordy(tail[key.start() - 1])):
            cut = min(cut, key.start())
        # a name or key that has only begun: its start is a word start among the last characters
        for start in _WORD_START_AT.finditer(tail, max(0, len(tail) - _LONGEST_PREFIX)):
            if tail[start.start() :] in _PREFIXES:
                cut = min(cut, start.start())
                break
        return lo + cut


_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _wordy(ch: str) -> bool:
    return ch in _ALNUM


__all__ = ["MASK", "SecretMask", "mask_secrets"]
