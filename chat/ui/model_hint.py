"""A first-visit hint for a Chinese browser when the model is the embedded English demo model:
its Chinese replies read fluently and mean little, so the page says so, and names a model and the
setting that fix it. Dismissed once, it stays away (the browser keeps that: ``chat.ui.page_state``)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import gradio as gr

from chat.backends.local.model_files import EMBEDDED_FILE
from chat.engine import ChatEngine
from chat.i18n import Lang, t
from chat.ui.labels import I18N
from chat.ui.page_state import closed_hint_js

EMBEDDED = PurePosixPath(EMBEDDED_FILE).name.split(".")[0]  # "SmolLM2-135M-Instruct", any quantisation
SUGGESTED = "Qwen/Qwen2.5-1.5B-Instruct-GGUF:qwen2.5-1.5b-instruct-q4_k_m.gguf"  # Chinese and English
CLOSED = "model_hint_closed"  # the saved state's key once the reader dismissed it


def english_only_model(engine: ChatEngine) -> str | None:
    """The embedded model's name when the default backend runs it, else None."""
    backend = engine.backends.get(engine.default_backend)
    model = str(getattr(backend, "model", ""))
    return model if model.startswith(EMBEDDED) else None


class ModelHint:
    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine
        # shown and hidden each by itself: no event outputs a container
        self.text = gr.Markdown(visible=False, elem_id="model-hint")
        self.close = gr.Button(I18N("hint_close"), size="sm", visible=False, elem_id="model-hint-close")

    def shown(self, lang: Lang, saved: dict[str, Any]) -> tuple[Any, Any]:
        """The hint for a Chinese reader of the embedded model who has not dismissed it."""
        model = english_only_model(self.engine)
        closed = saved.get(CLOSED) is True
        if lang != "zh" or model is None or closed:
            return gr.Markdown(visible=False), gr.Button(visible=False)
        text = "ℹ️ " + t("page.model_hint", lang, model=model, suggested=f"`{SUGGESTED}`")
        return gr.Markdown(text, visible=True), gr.Button(visible=True)

    def wire(self) -> None:
        self.close.click(
            lambda: (gr.Markdown(visible=False), gr.Button(visible=False)),
            None,
            [self.text, self.close],
            js=closed_hint_js(CLOSED),
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
