"""Language codes for Whisper, and Chinese transcripts in the script the user reads.

Whisper writes Mandarin in traditional or simplified characters as its training data did
(espeak-ng's Mandarin comes back mostly traditional). Transcripts of Chinese are folded to
simplified characters unless the user's language names a traditional script (zh-TW, zh-HK,
zh-MO, zh-Hant): the language is the user's when it is known, Whisper's guess only when not.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from chat.voice.errors import BadVoiceRequest

_CODE = re.compile(r"^[a-z]{2,3}$")
_TRADITIONAL = ("zh-tw", "zh-hk", "zh-mo", "zh-hant")

_lock = threading.Lock()
_convert: Callable[[str], str] | None = None


def whisper_language(language: str | None) -> str | None:
    """``zh-CN`` -> ``zh``, ``en_US`` -> ``en``, empty -> None (Whisper guesses); else a 400."""
    if not language or not language.strip():
        return None
    base = language.strip().lower().replace("_", "-").split("-", 1)[0]
    if not _CODE.match(base):
        raise BadVoiceRequest("voice.bad_language", value=language[:40])
    return base


def wants_traditional(language: str | None) -> bool:
    code = (language or "").strip().lower().replace("_", "-")
    return any(code == tag or code.startswith(tag + "-") for tag in _TRADITIONAL)


def to_simplified(text: str) -> str:
    """The whole text through OpenCC's t2s (phrases, not only single characters)."""
    global _convert
    with _lock:
        if _convert is None:
            import opencc

            _convert = opencc.OpenCC("t2s").convert
        return _convert(text)


def in_users_script(text: str, asked: str | None, heard: str) -> str:
    """``text`` heard as language ``heard``, in simplified characters when it is Chinese and the
    user (``asked``) did not name a traditional script."""
    if heard.lower().startswith("zh") and not wants_traditional(asked):
        return to_simplified(text)
    return text
