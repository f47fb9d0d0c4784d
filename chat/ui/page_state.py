"""What the browser keeps of the page in its localStorage: the open conversation and the settings,
so a reload comes back as it was, and each conversation's persona, system prompt and knowledge
base, so reopening it answers as it did.

The browser writes it itself (the events here run in the page, no request), and hands it to the
server when the page loads or a conversation opens, as the first input of those events (their
``js``). Nothing secret goes there (never the API key), and what comes back is checked like any
input: it is the browser's, and a value that no longer fits (a persona or knowledge base gone, a
number out of range) is left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

STORAGE_KEY = "chat-page"
KEPT_CONVERSATIONS = 200  # the newest conversations whose persona the browser remembers
SAVED_MAX_CHARS = 2_000_000  # what the server reads of it
# the settings a reload restores, in the order of ``PageState.fields``; a conversation keeps the first three
SETTINGS = (
    "persona", "system_prompt", "knowledge", "temperature", "context_length", "max_new_tokens", "top_p", "use_cache",
)  # fmt: skip
PER_CONVERSATION = SETTINGS[:3]
SYSTEM_PROMPT_MAX = 20_000
# the page's saved state, as the first input of an event (the others as they are)
READ_JS = f"(...values) => [localStorage.getItem({json.dumps(STORAGE_KEY)}) || '{{}}', ...values.slice(1)]"


def _write_js(conversation: str) -> str:
    """The page's saved state after a change: the settings and the open conversation (the list's
    value), and that conversation's own settings: ``"sent"`` records them (a message goes out
    with them), ``"new"`` only when it has none yet (a conversation just started or never seen
    here), ``"none"`` leaves them (a setting changed: it belongs to the conversation once it is
    used; a dropdown commits on blur, which may land after a click in the list opened another)."""
    return f"""(open, ...values) => {{
    const key = {json.dumps(STORAGE_KEY)}, names = {json.dumps(list(SETTINGS))}, mode = {json.dumps(conversation)};
    let saved;
    try {{ saved = JSON.parse(localStorage.getItem(key) || "{{}}") || {{}}; }} catch {{ saved = {{}}; }}
    saved.settings = Object.fromEntries(names.map((name, i) => [name, values[i]]));
    saved.open = open || null;
    const kept = saved.conversations || {{}};
    if (open && (mode === "sent" || (mode === "new" && !(open in kept)))) {{
        delete kept[open];
        kept[open] = Object.fromEntries(names.slice(0, 3).map((name, i) => [name, values[i]]));
    }}
    saved.conversations = Object.fromEntries(Object.entries(kept).slice(-{KEPT_CONVERSATIONS}));
    localStorage.setItem(key, JSON.stringify(saved));
}}"""


def closed_hint_js(flag: str) -> str:
    """Keep ``flag`` set in the saved state (a hint the reader dismissed)."""
    return f"""() => {{
    const key = {json.dumps(STORAGE_KEY)};
    let saved;
    try {{ saved = JSON.parse(localStorage.getItem(key) || "{{}}") || {{}}; }} catch {{ saved = {{}}; }}
    saved[{json.dumps(flag)}] = true;
    localStorage.setItem(key, JSON.stringify(saved));
}}"""


def parsed(saved: Any) -> dict[str, Any]:
    """The saved state the page sent, or {} for anything that is not one."""
    if not isinstance(saved, str) or len(saved) > SAVED_MAX_CHARS:
        return {}
    try:
        found = json.loads(saved)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def settings_of(saved: dict[str, Any]) -> dict[str, Any]:
    found = saved.get("settings")
    return dict(found) if isinstance(found, dict) else {}


def conversation_of(saved: dict[str, Any], conversation_id: str | None) -> dict[str, Any]:
    conversations = saved.get("conversations")
    found = conversations.get(conversation_id or "") if isinstance(conversations, dict) else None
    return {k: v for k, v in found.items() if k in PER_CONVERSATION} if isinstance(found, dict) else {}


def open_of(saved: dict[str, Any]) -> str | None:
    found = saved.get("open")
    return found if isinstance(found, str) else None


@dataclass
class PageState:
    """The components whose values the browser keeps (``fields``, in ``SETTINGS`` order), and a
    hidden carrier that takes the saved state to the server."""

    carrier: gr.Textbox
    fields: Sequence[Any]

    @classmethod
    def render(cls, fields: Sequence[Any]) -> PageState:
        return cls(gr.Textbox(visible=False, elem_id="saved-state"), fields)

    def wire(self, listing: gr.Radio, message: gr.Textbox) -> None:
        """Write the saved state when the user changes a setting, when a message is sent (the
        open conversation's settings too), and when another conversation opens or starts (its
        settings only when it is new)."""
        inputs = [listing, *self.fields]
        gr.on([f.input for f in self.fields], None, inputs, None, js=_write_js("none"), queue=False)
        message.submit(None, inputs, None, js=_write_js("sent"), queue=False)
        listing.change(None, inputs, None, js=_write_js("new"), queue=False)


def checked_settings(values: dict[str, Any], sliders: dict[str, gr.Slider]) -> dict[str, Any]:
    """The saved settings that still fit the page: text as text, numbers within their slider."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in sliders:
            slider = sliders[name]
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = min(max(value, slider.minimum), slider.maximum)
        elif name == "use_cache" and isinstance(value, bool):
            out[name] = value
        elif name in PER_CONVERSATION and isinstance(value, str):
            out[name] = value[:SYSTEM_PROMPT_MAX]
    return out
