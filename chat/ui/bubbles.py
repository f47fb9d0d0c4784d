"""What the chat shows around a reply's text: notices, a reasoning model's thinking, the marks of
a stopped or interrupted reply, and the stats line under the chat.

Every bubble here carries a metadata title, which makes it display-only: ``history_to_messages``
never sends it back to the model.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from chat.engine.reasoning import THINKING_ID
from chat.errors import ChatError
from chat.i18n import Lang, t
from chat.messages import Stats

log = logging.getLogger(__name__)

STOPPED_ID = "stopped"  # the mark's metadata id
# finish reasons the stats line names in words; "stop" (a normal end) says nothing
FINISHES = ("length", "cancelled", "blocked", "error", "timeout")


def notice(text: str) -> gr.ChatMessage:
    """A small titled bubble: a notice, an error or a refusal of the input."""
    return gr.ChatMessage(content="", metadata={"title": text, "status": "done"})


def thinking_bubble(thinking: str, lang: Lang) -> list[gr.ChatMessage]:
    """A reasoning model's thinking as a collapsed titled bubble ("Thinking" / "思考过程") before
    the reply; none without thinking."""
    thinking = thinking.strip()
    if not thinking:
        return []
    metadata = {"title": t("thinking.title", lang), "status": "done", "id": THINKING_ID}
    return [gr.ChatMessage(content=thinking, metadata=metadata)]


def so_far(thinking: str, text: str, lang: Lang) -> list[gr.ChatMessage]:
    """A reply as far as it got: its thinking (collapsed), then its text when there is any."""
    return [*thinking_bubble(thinking, lang), *([gr.ChatMessage(text)] if text else [])]


def stopped_mark(lang: Lang) -> gr.ChatMessage:
    """The bubble under a reply that Stop cut short ("■ Stopped." / "■ 已停止。"); for a page that
    shows a stored reply whose status is ``stopped`` too."""
    return gr.ChatMessage(
        content="", metadata={"title": "■ " + t("notice.stopped", lang), "status": "done", "id": STOPPED_ID}
    )


def interrupted_mark(lang: Lang) -> gr.ChatMessage:
    """The bubble under a stored reply the server never finished (it stopped or crashed mid-reply):
    the partial text is shown, and said to be partial."""
    return notice("⚠️ " + t("notice.interrupted", lang))


def is_stopped_mark(message: Any) -> bool:
    metadata = (
        message.get("metadata") if isinstance(message, dict) else getattr(message, "metadata", None)
    ) or {}
    return metadata.get("id") == STOPPED_ID


def user_message(exc: Exception, lang: Lang) -> str:
    """A ``ChatError``'s own sentence; anything else is a bug: logged in full, shown generically."""
    if isinstance(exc, ChatError):
        return exc.user_message(lang)
    log.exception("unexpected error in a chat request")
    return t("error.internal", lang)


def format_stats(stats: Stats, lang: Lang = "en", history: str = "") -> str:
    """One line under the chat in plain words: which model answered, how much and how fast, and
    anything unusual about the reply; ``history`` (what the model sees of a long conversation,
    chat.reply.notes) goes on a line of its own, once for the whole chat."""
    parts = [f"**{stats.backend}** · `{stats.model}`" if stats.model else f"**{stats.backend}**"]
    if stats.from_cache:
        parts.append(t("stats.from_cache", lang))
    else:
        parts.append(t("stats.tokens", lang, n=stats.completion_tokens))
        if stats.time_to_first_token is not None:
            parts.append(t("stats.first_token", lang, time=_seconds(stats.time_to_first_token, lang)))
        if stats.tokens_per_second:
            parts.append(t("stats.speed", lang, n=f"{stats.tokens_per_second:.0f}"))
    if stats.fallback:
        parts.append(t("stats.fallback", lang))
    if stats.retries:
        parts.append(t("stats.retries", lang, n=stats.retries))
    if stats.dropped_messages and not history:
        parts.append(t("stats.dropped", lang, n=stats.dropped_messages))
    if stats.finish_reason in FINISHES:
        parts.append(t(f"stats.finish_{stats.finish_reason}", lang))
    return " · ".join(parts) + (f"\n\n{history}" if history else "")


def _seconds(seconds: float, lang: Lang) -> str:
    """A short time as a reader says it: "120 ms", "1.5 s" ("120 毫秒", "1.5 秒")."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} " + ("毫秒" if lang == "zh" else "ms")
    return f"{seconds:.1f} " + ("秒" if lang == "zh" else "s")
