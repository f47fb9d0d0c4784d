"""The page's conversation files and ratings: export as Markdown or JSON, and the feedback log of
likes and dislikes (an imported file becomes a conversation: ``chat.ui.sidebar``).

``PageFiles`` is a part of ``chat.ui.handlers.ChatHandlers`` (``self.engine``, ``self.feedback``
and ``self.exports`` are set there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

if TYPE_CHECKING:
    from chat.engine import ChatEngine
    from chat.reply.transcript import ExportFolder, FeedbackLog


class PageFiles:
    engine: ChatEngine
    feedback: FeedbackLog | None
    exports: ExportFolder

    def like(self, history: list[dict[str, Any]], data: gr.LikeData) -> None:
        if self.feedback is None:
            return
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        model = ", ".join(f"{n}:{b.model}" for n, b in self.engine.backends.items())
        self.feedback.record(liked=data.liked, index=int(index), history=history, model=model)

    def export(self, history: list[dict[str, Any]], kind: str) -> str | None:
        return str(self.exports.write(history, kind)) if history else None
