"""A Continue button under a reply that stopped at the length limit: one click asks the model to
go on, as a new turn in the page's language ("Please continue." / "请继续。"), the way chat apps
offer it. It shows while the stats line says the reply stopped there."""

from __future__ import annotations

import json

import gradio as gr

from chat.i18n import t
from chat.ui.labels import I18N

# the words in the browser's language, into the message box, then Send (the box's own events run)
CONTINUE_JS = f"""() => {{
    const words = {json.dumps({lang: t("page.continue_words", lang) for lang in ("en", "zh")}, ensure_ascii=False)};
    const box = document.querySelector("#chat-input textarea");
    if (!box) return;
    box.value = words[navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en"];
    box.dispatchEvent(new Event("input", {{ bubbles: true }}));
    setTimeout(() => document.querySelector("#chat-input button.submit-button")?.click(), 50);
}}"""


def cut_at_length(stats: str | None) -> bool:
    """Whether the stats line (chat.ui.bubbles.format_stats) says the reply hit the length limit."""
    return any(t("stats.finish_length", lang) in (stats or "") for lang in ("en", "zh"))


class ContinueButton:
    """Rendered where it is created (under the stats line)."""

    def __init__(self) -> None:
        self.button = gr.Button(I18N("continue"), size="sm", visible=False, elem_id="continue-reply")

    def wire(self, stats: gr.Markdown) -> None:
        quiet = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
        stats.change(lambda line: gr.Button(visible=cut_at_length(line)), stats, self.button, **quiet)
        self.button.click(None, None, None, js=CONTINUE_JS, queue=False)
