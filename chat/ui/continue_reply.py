"""A Continue button under a reply that stopped at the length limit: one click asks the model to
go on, as a new turn in the page's language ("Please continue." / "请继续。"), the way chat apps
offer it. It shows while the stats line says the reply stopped there.

The notice that says so ("The reply reached the max new tokens limit.") sits beside the button,
below the reply, instead of as a bubble above the reply's text."""

from __future__ import annotations

import json

import gradio as gr

from chat.i18n import Lang, t
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


def cut_at_length(stats: str | None) -> Lang | None:
    """The language of a stats line (chat.ui.bubbles.format_stats) that says the reply hit the
    length limit; None when it does not say so."""
    langs: tuple[Lang, ...] = ("en", "zh")
    return next((lang for lang in langs if t("stats.finish_length", lang) in (stats or "")), None)


class ContinueButton:
    """Rendered where it is created (under the stats line). The row is never an event's output
    (chat.ui.layout: each streamed frame would copy it): its two parts show and hide."""

    def __init__(self) -> None:
        with gr.Row(elem_id="continue-row"):
            self.notice = gr.Markdown(elem_id="length-notice", visible=False, scale=0, min_width=0)
            self.button = gr.Button(
                I18N("continue"), size="sm", visible=False, elem_id="continue-reply", scale=0
            )

    def wire(self, stats: gr.Markdown) -> None:
        quiet = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
        stats.change(self.show, stats, [self.notice, self.button], **quiet)
        self.button.click(None, None, None, js=CONTINUE_JS, queue=False)

    @staticmethod
    def show(line: str | None) -> tuple[gr.Markdown, gr.Button]:
        lang = cut_at_length(line)
        shown = lang is not None
        return gr.Markdown(t("notice.length", lang) if lang else "", visible=shown), gr.Button(visible=shown)
