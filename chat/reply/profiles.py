"""The owner's profile (issue 12, point 7): checked before it is kept, and the short system note
it becomes for that owner's turns when they opt in (``use_in_prompt``).

    PUT /api/me/profile {"display_name": "Ana", "language": "zh", "persona": "tutor",
                         "notes": "Vegetarian\\nLives in Lyon", "use_in_prompt": true}
    -> for each of Ana's turns, after the system prompt:
       "About the user, from their profile: name: Ana. Preferred language: Chinese. ..."

The profile is what the user writes, so its text passes the input guard like a message does
(``check_profile``): a refused note is never stored and never reaches the model. The store keeps
it as ``records.Profile`` (``opt_in`` is ``use_in_prompt`` there).
"""

from __future__ import annotations

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
        "head": "About the user, from their profile (use it when it helps):",
        "name": "Name: {value}.",
        "language": "Preferred language: {value}.",
        "notes": "Notes:\n{value}",
        "lang_en": "English",
        "lang_zh": "Chinese",
    },
    "zh": {
        "head": "关于用户（来自其个人资料，需要时参考）：",
        "name": "称呼：{value}。",
        "language": "偏好语言：{value}。",
        "notes": "备注：\n{value}",
        "lang_en": "英文",
        "lang_zh": "中文",
    },
}


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


def profile_note(profile: Profile | None, lang: Lang) -> Message | None:
    """The system note for the owner's turns: None unless they opted in and wrote something."""
    if profile is None or not profile.opt_in:
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
