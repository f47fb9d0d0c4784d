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
LABELS = {"send": "page.send", "stop": "page.stop", "details": "page.details", "skip": "page.skip"}


@cache
def page_script() -> str:
    """``page.js`` called with its labels (both languages: the browser picks) and ``page.css``."""
    labels = {lang: {name: t(key, lang) for name, key in LABELS.items()} for lang in ("en", "zh")}
    script = (FOLDER / "page.js").read_text(encoding="utf-8")
    css = (FOLDER / "page.css").read_text(encoding="utf-8")
    return f"() => (\n{script}\n)({json.dumps(labels, ensure_ascii=False)}, {json.dumps(css)})"


def attach_assets(demo: gr.Blocks) -> None:
    """Run the page script once the page has loaded; call inside ``with demo:``."""
    demo.load(None, None, None, js=page_script(), queue=False, api_visibility="private")
