"""The owner's profile (issue 12, point 7): checked before it is kept, and the short system note
it becomes for that owner's turns when they opt in (``use_in_prompt``).

    PUT /api/me/profile {"display_name": "Ana", "language": "zh", "persona": "tutor",
                         "notes": "Vegetarian\\nLives in Lyon", "use_in_prompt": true}
    -> for each of Ana's turns (but one about the assistant itself), after the system prompt:
       "You are the assistant. ... facts about the user, not about you ...: The user's name: Ana. ..."

A small model reads a name in its prompt as its own: with the note "About the user: Name: Ada",
the embedded model answered "What is your name?" with "My name is Ada" (issue 35). So the note
says whose facts they are, and a message that asks about the assistant itself ("Who are you?",
"你叫什么名字？") gets no note at all: it needs nothing from the profile, and a name that is not
in the prompt cannot be claimed. ``bench/bench_profile_identity.py`` measures both. Such a turn's
prompt leaves the prompt cache's prefix after the system prompt (its history is evaluated again);
questions about the assistant are rare enough for that.

The profile is what the user writes, so its text passes the input guard like a message does
(``check_profile``): a refused note is never stored and never reaches the model. The store keeps
it as ``records.Profile`` (``opt_in`` is ``use_in_prompt`` there).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from chat.errors import InvalidRequest
from chat.i18n import Lang
from chat.messages import Message
from chat.reply.personas import load_persona_list
from chat.store.records import Profile

if TYPE_CHECKING:
    from chat.engine import ChatEngine

FIELDS = ("display_name", "language", "persona", "notes", "use_in_prompt")
DISPLAY_NAME_MAX = 100
NOTES_MAX_CHARS = 500
NOTES_MAX_LINES = 8
LANGUAGES = ("", "en", "zh")

NOTE: dict[Lang, dict[str, str]] = {
    "en": {
        "head": "You are the assistant. The person writing to you is the user; these facts from their "
        "profile are about the user, not about you (never give the user's name as your own):",
        "name": "The user's name: {value}.",
        "language": "Preferred language: {value}.",
        "notes": "Notes:\n{value}",
        "lang_en": "English",
        "lang_zh": "Chinese",
    },
    "zh": {
        "head": "你是助手。给你发消息的人是用户；以下来自其个人资料的信息是关于用户的，不是关于你的"
        "（不要把用户的名字当成你自己的名字）：",
        "name": "用户的称呼：{value}。",
        "language": "偏好语言：{value}。",
        "notes": "备注：\n{value}",
        "lang_en": "英文",
        "lang_zh": "中文",
    },
}


# A message about the assistant itself (its name, who or what it is), in English or Chinese...
_ABOUT_ASSISTANT = re.compile(
    r"\b(?:your (?:own |real |full )?name|who are you|who're you|what are you|yourself"
    r"|call you|are you called|are you named)\b"
    r"|你叫什么|你是谁|你的名字|你自己|介绍一下你|怎么称呼你|您叫什么|您是谁|您的名字|您贵姓|您自己",
    re.IGNORECASE,
)
# ...and one that also asks about the user, who then needs their profile ("Do you know my name?").
_ABOUT_USER = re.compile(r"\b(?:my|mine|myself|who am i|about me)\b|我的|我叫|我是谁|关于我", re.IGNORECASE)


def asks_about_assistant(text: str) -> bool:
    """``text`` asks who or what the assistant is and nothing about the user: the turn the
    profile's name gets taken for the assistant's own, and one that needs nothing from it."""
    return bool(_ABOUT_ASSISTANT.search(text)) and not _ABOUT_USER.search(text)


def personas() -> tuple[str, ...]:
    """The persona keys a profile may prefer ("" for none)."""
    return ("", *sorted({p.key for p in load_persona_list()}))


def checked_profile(
    *, display_name: str, language: str, persona: str, notes: str, use_in_prompt: bool
) -> Profile:
    """A profile within its bounds (``InvalidRequest`` saying which field is wrong). Notes keep
    their lines, trimmed; blank lines go."""
    display_name = " ".join(display_name.split())
    notes = "\n".join(line.strip() for line in notes.splitlines() if line.strip())
    if len(display_name) > DISPLAY_NAME_MAX:
        raise InvalidRequest(reason="api.too_long", field="display_name", limit=DISPLAY_NAME_MAX)
    if language not in LANGUAGES:
        raise InvalidRequest(reason="api.not_choice", field="language", choices='"", "en", "zh"')
    allowed = personas()
    if persona not in allowed:
        choices = ", ".join(f'"{key}"' for key in allowed)
        raise InvalidRequest(reason="api.not_choice", field="persona", choices=choices)
    if len(notes) > NOTES_MAX_CHARS:
        raise InvalidRequest(reason="api.too_long", field="notes", limit=NOTES_MAX_CHARS)
    if len(notes.splitlines()) > NOTES_MAX_LINES:
        raise InvalidRequest(reason="api.too_many_lines", field="notes", limit=NOTES_MAX_LINES)
    return Profile(
        display_name=display_name, language=language, persona=persona, notes=notes, opt_in=use_in_prompt
    )


def check_profile(engine: ChatEngine, profile: Profile) -> None:
    """The input guard's verdict on the profile's free text, as on a message the user sends
    (``InputBlocked`` refuses it)."""
    text = "\n".join(part for part in (profile.display_name, profile.notes) if part)
    if text:
        engine.check_input([Message("user", text)])


def profile_dict(profile: Profile | None) -> dict[str, Any]:
    """The profile as the API shows it (an empty one when none is kept)."""
    profile = profile or Profile()
    return {
        "display_name": profile.display_name,
        "language": profile.language,
        "persona": profile.persona,
        "notes": profile.notes,
        "use_in_prompt": profile.opt_in,
    }


def profile_note(profile: Profile | None, lang: Lang, asked: str = "") -> Message | None:
    """The system note for the owner's turn that asks ``asked``: None unless they opted in and
    wrote something, and None when the message asks about the assistant itself."""
    if profile is None or not profile.opt_in or asks_about_assistant(asked):
        return None
    words = NOTE[lang]
    lines = []
    if profile.display_name:
        lines.append(words["name"].format(value=profile.display_name))
    if profile.language:
        language = words.get(f"lang_{profile.language}", profile.language)
        lines.append(words["language"].format(value=language))
    if profile.notes:
        lines.append(words["notes"].format(value=profile.notes))
    return Message("system", "\n".join([words["head"], *lines])) if lines else None
