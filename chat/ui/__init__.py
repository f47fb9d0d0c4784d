"""The Gradio page: handlers (Gradio shapes <-> the reply pipeline), labels and layout."""

from chat.ui.bubbles import format_stats
from chat.ui.convert import build_request, history_to_messages
from chat.ui.handlers import ChatHandlers
from chat.ui.labels import I18N
from chat.ui.layout import GRADIO_CACHE_LIFETIME, build_ui

__all__ = [
    "GRADIO_CACHE_LIFETIME",
    "I18N",
    "ChatHandlers",
    "build_request",
    "build_ui",
    "format_stats",
    "history_to_messages",
]
