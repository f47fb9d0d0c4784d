"""The page's conversation files and ratings: export as Markdown or JSON, import a JSON file,
and the feedback log of likes and dislikes.

``PageFiles`` is a part of ``chat.ui.handlers.ChatHandlers`` (``self.engine``, ``self.feedback``
and ``self.exports`` are set there).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from chat.errors import ChatError
from chat.i18n import request_language
from chat.reply import transcript

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

    @staticmethod
    def import_conversation(
        path: str | None, request: gr.Request | None = None
    ) -> tuple[list[dict[str, str]], None]:
        """The imported chat, under a new conversation id (it must not overwrite the open saved
        chat). A bad file is explained in the browser's language: no message tells it here."""
        if not path:
            return [], None
        try:
            return transcript.from_json(Path(path).read_bytes()), None
        except ChatError as exc:
            headers = getattr(request, "headers", None) or {}
            lang = request_language(accept_language=headers.get("accept-language", ""))
            raise gr.Error(exc.user_message(lang), print_exception=False) from None
