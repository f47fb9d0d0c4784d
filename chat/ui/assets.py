"""The page's own script and style sheet (``chat/ui/assets/``), run in the browser on page load.

They are attached as a JavaScript load event of the Blocks rather than ``head``/``css``:
``gr.mount_gradio_app`` replaces a Blocks' ``head`` and ``css`` with its own arguments.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import gradio as gr

from chat.i18n import t

FOLDER = Path(__file__).with_name("assets")
# the sentences page.js names things with, from chat.i18n (the page's area, chat/i18n/page.py)
LABELS = {
    name: f"page.{name}"
    for name in (
        "send", "stop", "details", "skip", "sidebar", "reset", "number", "range", "copy", "copy_all", "clear",
        "like", "liked", "dislike", "disliked", "retry", "undo", "edit", "upload", "chat_log", "footer_nav",
        "no_conversations", "no_match",
    )
}  # fmt: skip


@cache
def page_script() -> str:
    """``page.js`` called with its labels (both languages: the browser picks) and ``page.css``."""
    # {name} and {search} stay as they are: the page fills them in
    fields = {"name": "{name}", "search": "{search}"}
    labels = {lang: {name: t(key, lang, **fields) for name, key in LABELS.items()} for lang in ("en", "zh")}
    script = (FOLDER / "page.js").read_text(encoding="utf-8")
    css = (FOLDER / "page.css").read_text(encoding="utf-8")
    return f"() => (\n{script}\n)({json.dumps(labels, ensure_ascii=False)}, {json.dumps(css)})"


def attach_assets(demo: gr.Blocks) -> None:
    """Run the page script once the page has loaded; call inside ``with demo:``."""
    demo.load(None, None, None, js=page_script(), queue=False, api_visibility="private")
