"""Mask credentials in a streamed reply: a password, a verification code, an API key, a token.

A model can repeat a secret from its context or make up a plausible one; either way it must not
reach the screen, the cache or a log. The value after a credential's name ("password: hunter2",
"验证码是 482913") and well-known key formats ("sk-...", "ghp_...") are replaced by ``MASK``.

Only a value is secret, not its name: so nothing is held back until a whole name (or a key's
prefix) has arrived, and then only the value, until it ends. The last released characters are
kept as context, so a name split across chunks ("pass" + "word: hunter2") is still found.
"""

from __future__ import annotations

import re

from chat.engine.protocols import OutputFilter

MASK = "••••••"

_NAMES = (
    r"password|passcode|passphrase|passwd|pin(?: code)?|otp|one[ -]?time (?:code|password)"
    r"|verification code|security code|auth(?:entication)? code|2fa code|login code|sms code"
    r"|api[ _-]?key|access[ _-]?key|secret(?: key)?|(?:access |auth |bearer |api )?token"
    r"|密码|口令|验证码|校验码|动态码|短信码|安全码|确认码|密钥|秘钥|令牌"
)
_SEPARATOR = r"[ \t]*(?:is|was|are|=|:|：|是|为|為)?[ \t]*[\"'“`]?"
_VALUE_CHARS = r"A-Za-z0-9!@#$%^&*._+\-/="
_NAMED = re.compile(
    rf"(?<![A-Za-z0-9])(?P<name>{_NAMES})(?![A-Za-z]){_SEPARATOR}"
    rf"(?P<value>[{_VALUE_CHARS}]{{3,}}[{_VALUE_CHARS.replace('.', '')}])",
    re.IGNORECASE,
)
_KEYED_NAMES = re.compile(r"key|secret|token|密钥|秘钥|令牌", re.IGNORECASE)
_FORMATS = re.compile(
    r"(?<![A-Za-z0-9])(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}"
    r"|xox[bpas]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
# A value, or a key, that may still be growing at the end of the text (lower-cased).
_OPEN_VALUE = re.compile(rf"(?<![a-z0-9])(?:{_NAMES})(?![a-z])(?P<value>{_SEPARATOR}[{_VALUE_CHARS}]*)\Z")
_OPEN_KEY = re.compile(r"(?<![a-z0-9])(?:sk-|gh[pousr]_|akia|xox[bpas]-|eyj)[a-z0-9_.\-]*\Z")
# Anything that may start a credential: when a chunk and its context have none, it passes as is.
_HINT = re.compile(f"{_NAMES}|sk-|gh[pousr]_|akia|xox[bpas]-|eyj")
# The last characters of every name and key prefix: a chunk without any cannot complete one.
_NAME_ENDS = frozenset("denpyt-_ajDENPYTAJ码令钥牌")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")  # keeps positions
_CONTEXT = 24  # released characters kept: the longest name, split across chunks
_OPEN_WITHIN = 48  # characters a name's value may take to arrive and end


def _is_secret(match: re.Match[str]) -> bool:
    value = match["value"]
    if any(c.isdigit() for c in value):
        return True
    return bool(_KEYED_NAMES.search(match["name"])) and len(value) >= 12


def _masked(text: str, start: int, end: int) -> str:
    """``text[start:end]`` with every credential value that ends inside it replaced by ``MASK``."""
    spans = [(m.start(), m.end()) for m in _FORMATS.finditer(text) if start < m.end() <= end]
    spans += [m.span("value") for m in _NAMED.finditer(text) if start < m.end() <= end and _is_secret(m)]
    if not spans:
        return text[start:end]
    out, pos = [], start
    for a, b in sorted(spans):
        a = max(a, start, pos)
        if b <= pos:
            continue
        out.append(text[pos:a])
        out.append(MASK)
        pos = b
    out.append(text[pos:end])
    return "".join(out)


def mask_secrets(text: str) -> str:
    """``text`` with every credential value replaced by ``MASK``."""
    return _masked(text, 0, len(text))


class SecretMask:
    """One reply's output filter that masks credentials in what ``inner`` (if any) releases.

    Not thread-safe: one per reply. Wrapping the phrase filter directly, rather than chaining
    two filters, saves a call per streamed token.
    """

    def __init__(self, inner: OutputFilter | None = None) -> None:
        self._inner = inner
        self._context = ""  # the last characters released, for a name split across chunks
        self._pending = ""  # a value or key that may still be growing
        self._hot = False  # the context holds (the start of) a name or key

    def feed(self, text: str) -> str:
        if self._inner is not None:
            text = self._inner.feed(text)
        if not text:
            return ""
        if not self._pending and (
            (not self._hot and _NAME_ENDS.isdisjoint(text))
            or _HINT.search((self._context + text).translate(_LOWER)) is None
        ):
            self._context = (self._context + text)[-_CONTEXT:]
            self._hot = False
            return text  # the common case: nothing held, nothing that may start a credential
        return self._release(text, final=False)

    def flush(self) -> str:
        tail = self._inner.flush() if self._inner is not None else ""
        return self._release(tail, final=True) if tail or self._pending else ""

    def _release(self, text: str, *, final: bool) -> str:
        base = len(self._context)
        full = self._context + self._pending + text
        cut = len(full) if final else self._open_from(full, base)
        released = _masked(full, base, cut)
        self._pending = full[cut:]
        self._context = (self._context + released)[-_CONTEXT:]
        self._hot = _HINT.search(self._context.translate(_LOWER)) is not None
        return released

    @staticmethod
    def _open_from(full: str, base: int) -> int:
        """Where, at or after ``base``, a value or key that may still grow starts (else the end)."""
        lo = max(0, len(full) - _OPEN_WITHIN - _CONTEXT)
        low = full[lo:].translate(_LOWER)
        cut = len(full)
        value = _OPEN_VALUE.search(low)
        if value is not None:
            cut = lo + value.start("value")
        key = _OPEN_KEY.search(low, max(low.rfind(" "), low.rfind("\n")) + 1)
        if key is not None:
            cut = min(cut, lo + key.start())
        return max(cut, base)


__all__ = ["MASK", "SecretMask", "mask_secrets"]
