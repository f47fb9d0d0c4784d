"""User-facing sentences in English and Chinese, and a guess of the user's language.

The UI's fixed labels are translated in the browser by ``gr.I18n`` (see ``chat.ui``); the
sentences here are produced on the server (errors, notices, refusals), so the server picks the
language from what the user wrote.
"""

from __future__ import annotations

import re
from typing import Literal

from chat.i18n import admin, invalid, knowledge_bases, refusals, replies, tools, voice

Lang = Literal["en", "zh"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# Each area keeps its own sentences; a key is in exactly one of them (tests/test_i18n.py).
AREAS = (
    replies.MESSAGES,
    admin.MESSAGES,
    invalid.MESSAGES,
    refusals.MESSAGES,
    knowledge_bases.MESSAGES,
    tools.MESSAGES,
    voice.MESSAGES,
)
MESSAGES: dict[str, dict[Lang, str]] = {key: entry for area in AREAS for key, entry in area.items()}  # type: ignore[misc]


def detect_language(text: str) -> Lang:
    """Chinese if the text contains any CJK ideograph, else English."""
    return "zh" if _CJK.search(text or "") else "en"


def request_language(text: str = "", accept_language: str = "") -> Lang:
    """The user's language: from what they wrote, else (nothing written yet, e.g. a malformed
    body) from the ``Accept-Language`` header's first choice, else English."""
    if text and text.strip():
        return detect_language(text)
    first = accept_language.split(",", 1)[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


class Phrase(str):
    """A sentence of ``MESSAGES`` made where the reader's language is unknown (a loading status
    set by a background thread): it is its English text, and ``translated`` renders it later in
    the language of whoever reads it."""

    key: str
    fields: dict[str, object]

    def __new__(cls, key: str, **fields: object) -> Phrase:
        phrase = super().__new__(cls, t(key, "en", **fields))
        phrase.key, phrase.fields = key, fields
        return phrase


def translated(text: str, lang: Lang) -> str:
    """``text`` in ``lang`` when it is a ``Phrase``; any other text as it is."""
    return t(text.key, lang, **text.fields) if isinstance(text, Phrase) else text


def t(key: str, lang: Lang = "en", **fields: object) -> str:
    """The message ``key`` in ``lang``, with ``fields`` filled in (missing fields stay blank)."""
    entry = MESSAGES.get(key) or MESSAGES["error.internal"]
    template = entry.get(lang) or entry["en"]
    return template.format_map(_Blank(fields))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""
