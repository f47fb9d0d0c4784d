"""The page's chat handler: the reply pipeline's steps streamed into the chatbot.

All the work happens in the reply pipeline; the handlers only convert between Gradio's shapes and
the pipeline's messages and events (``chat.ui.convert``, ``chat.ui.bubbles``), and turn errors into
readable messages. ``ChatHandlers`` gathers the page's other entry points from their modules:
Stop's marks (``chat.ui.stop_marks``), the public ``/chat`` API (``chat.ui.chat_api``), exports,
imports and ratings (``chat.ui.files``).

The chat handlers are async generators that drive the pipeline through
``chat.service.async_bridge.EventPump``: each step of generation runs on a worker thread, and a
request waiting for the model holds none (Gradio runs a sync generator's every step on a thread,
and a queued request's step would block there until its turn).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from cachetools import LRUCache

from chat.engine import ChatEngine
from chat.errors import ChatError
from chat.i18n import Lang, detect_language, request_language, t, translated
from chat.knowledge.context import without_markers
from chat.messages import Message, Notice, TextDelta, ThinkingDelta, ToolUse, Waiting
from chat.reply.notes import HistoryNotice
from chat.reply.pipeline import Pipeline
from chat.reply.transcript import ExportFolder, FeedbackLog
from chat.reply.turn import (
    OUTCOMES,
    Cancelled,
    Failure,
    Refusal,
    Reply,
    ReplyRequest,
    Step,
    StoredConversation,
)
from chat.service.async_bridge import EventPump, ThreadBudget
from chat.ui.bubbles import format_stats, notice, so_far, stopped_mark, thinking_bubble, user_message
from chat.ui.chat_api import ApiChat
from chat.ui.convert import build_params, build_request
from chat.ui.files import PageFiles
from chat.ui.knowledge import sources_bubble
from chat.ui.stop_marks import StopMarks, Turn
from chat.ui.tool_blocks import tool_block

# The growing reply reaches a new chat's page at most 20 times a second: every frame costs the
# server a diff of the chat and the browser a re-render of the reply's Markdown; a frame costs more
# the longer the conversation (Gradio copies the whole chat for each), so the pace slows with it
# (figures: bench/bench_stream_frames.py). The reply's end always arrives whole.
FRAME_SECONDS = 0.05
FRAME_CHARS = 8_000  # each 8,000 characters of conversation add FRAME_SECONDS between frames
FRAME_SECONDS_MAX = 0.3
# seconds between repeats of an unchanged queue notice: each frame lets Gradio see a closed tab
WAITING_REFRESH = 1.0
CHAT_CONCURRENCY = 16  # replies each chat event (the page's, ``/chat``) runs at once (chat.ui.layout)


def frame_seconds(messages: Sequence[Message]) -> float:
    """The least time between two frames of a reply streamed after ``messages``."""
    shown = sum(len(m.content) for m in messages)
    return min(FRAME_SECONDS_MAX, FRAME_SECONDS * (1 + shown / FRAME_CHARS))


def page_language(message: Any, request: gr.Request | None) -> Lang:
    """The language of what the page itself says around a reply: Chinese when the message or the
    browser is, so a Chinese page says "排队" even while its user writes English."""
    headers = getattr(request, "headers", None) or {}
    browser = request_language(accept_language=headers.get("accept-language", ""))
    written = detect_language(message if isinstance(message, str) else "")
    return "zh" if "zh" in (browser, written) else "en"


@dataclass
class _Shown:
    """What the page shows of one reply while it streams: notices, then the reply so far."""

    lang: Lang
    notices: list[gr.ChatMessage] = field(default_factory=list)
    text: str = ""
    thinking: str = ""
    history: str = ""  # what the model sees of a long conversation: said once, under the chat

    def frame(self, *reply: gr.ChatMessage) -> list[gr.ChatMessage]:
        body = list(reply) or so_far(self.thinking, without_markers(self.text), self.lang)
        return [*self.notices, *body]


class ChatHandlers(StopMarks, ApiChat, PageFiles):
    """The entry points into the engine from Gradio: the UI's chat and the public ``/chat`` API.

    Both are async generators whose pipeline steps run on ``self.budget``'s worker threads, not on
    Gradio's 40-thread limiter: that one is shared by the page's other events (the conversation
    list, uploads, exports), which a busy chat would otherwise starve, and the service routes have
    their own budget too. It is sized to the page's chat and ``/chat`` both running
    ``CHAT_CONCURRENCY`` replies, each holding a thread only while a step of it runs: a reply
    waiting for the model holds none.
    """

    def __init__(self, engine: ChatEngine | Pipeline, *, feedback: FeedbackLog | None = None) -> None:
        super().__init__()
        # The app hands in the service's tracked pipeline (metrics, request log); tests an engine.
        self.pipeline = engine if isinstance(engine, Pipeline) else Pipeline(engine)
        self.engine = self.pipeline.engine
        self.feedback = feedback
        self.exports = ExportFolder()
        # session -> (history length, message) of its last request: the same pair again is a
        # Retry/regenerate, which must not be answered from the cache.
        self._last_request: LRUCache[str, tuple[int, str]] = LRUCache(maxsize=10_000)
        self.budget = ThreadBudget(2 * CHAT_CONCURRENCY)  # the chat's worker threads (see above)

    def _is_regenerate(self, request: gr.Request | None, history: Any, message: str) -> bool:
        session = getattr(request, "session_hash", None)
        if not session:
            return False
        key = (len(history or []), message)
        repeated = self._last_request.get(session) == key
        self._last_request[session] = key
        return repeated

    async def ui(
        self,
        message: str,
        history: list[dict[str, Any]],
        system_prompt: str,
        temperature: float,
        context_length: int,
        max_new_tokens: int,
        top_p: float,
        backend: str | None = None,
        api_key: str = "",
        use_cache: bool = True,
        knowledge: str | None = None,
        request: gr.Request = None,
        conversation: StoredConversation | None = None,
    ) -> AsyncIterator[tuple[list[gr.ChatMessage], str]]:
        """Stream into the chatbot: notices as small titled bubbles, then the reply. With
        ``conversation`` (the page's open one, chat.ui.sidebar) the turn is kept in the store;
        with ``knowledge`` the reply answers from that knowledge base, its sources under it."""
        shown = _Shown(page_language(message, request))
        turn = self.new_turn(request)
        pump: EventPump[Step] | None = None
        try:
            messages = build_request(message, history, system_prompt)
            reply = ReplyRequest(
                messages=messages,
                params=build_params(temperature, context_length, max_new_tokens, top_p),
                backend=backend or None,
                api_key=(api_key or "").strip() or None,
                use_cache=bool(use_cache) and not self._is_regenerate(request, history, message),
                conversation=conversation,
                knowledge=knowledge or None,
            )
            pump = self._pump(reply, turn)
            async for frame in self._frames(pump, turn, shown, frame_seconds(messages)):
                yield frame
        except Exception as exc:  # noqa: BLE001 - the UI seam: every failure becomes a readable bubble
            turn.ended = True
            error = notice("⚠️ " + user_message(exc, shown.lang))
            yield [*shown.notices, *([gr.ChatMessage(shown.text)] if shown.text else []), error], ""
        finally:  # also on Stop (Gradio cancels the task) and a closed tab (Gradio closes us)
            if pump is not None:
                await pump.aclose()

    async def _frames(
        self, pump: EventPump[Step], turn: Turn, shown: _Shown, pace: float
    ) -> AsyncIterator[tuple[list[gr.ChatMessage], str]]:
        """The chatbot's frames for the reply's steps: at most one per ``pace`` seconds while it
        grows, an unchanged queue notice once per ``WAITING_REFRESH``, every outcome whole."""
        lang = shown.lang
        waiting_shown, waiting_sent, frame_sent = "", 0.0, 0.0
        async for step in pump:
            # Set here, not in the worker: a step Stop abandoned may still end in an outcome that
            # the page never gets (then the reply is marked stopped).
            turn.ended = isinstance(step, OUTCOMES)
            match step:
                case Waiting(position=position, status=status):
                    waiting = (
                        t("notice.loading", lang, status=translated(status, lang))
                        if status
                        else t("notice.waiting", lang, position=position)
                    )
                    if waiting != waiting_shown or time.monotonic() - waiting_sent >= WAITING_REFRESH:
                        waiting_shown, waiting_sent = waiting, time.monotonic()
                        yield [*shown.notices, notice(waiting)], ""
                case Notice(kind="blocked"):
                    pass  # the refusal replaces the whole reply
                case HistoryNotice():  # in the stats line, not a bubble on every reply
                    shown.history = step.say(lang)
                case Notice(kind="length"):
                    pass  # said under the reply, beside Continue (chat.ui.continue_reply)
                case Notice(text=text):
                    shown.notices.append(notice(text))
                case ToolUse():  # a collapsed block per call, before the reply
                    shown.notices.append(tool_block(step, lang))
                case ThinkingDelta(text=delta):
                    shown.thinking += delta
                case TextDelta(text=delta):
                    shown.text += delta
                case Refusal(stage="input", text=refusal):
                    yield [*shown.notices, notice("⚠️ " + refusal)], ""
                case Failure(error=error):
                    yield [*shown.frame(), notice("⚠️ " + user_message(error, lang))], ""
                case Cancelled():
                    cut = so_far(step.thinking, without_markers(step.text), lang)
                    yield (
                        [*shown.frame(*cut), stopped_mark(lang)],
                        format_stats(step.stats, lang, shown.history),
                    )
                case Reply():
                    text = gr.ChatMessage(without_markers(step.text))
                    reply = [*thinking_bubble(step.thinking, lang), text, *sources_bubble(step.sources, lang)]
                    yield shown.frame(*reply), format_stats(step.stats, lang, shown.history)
                case Refusal():  # an output refusal withholds the thinking with the reply
                    yield shown.frame(gr.ChatMessage(step.text)), format_stats(step.stats, lang)
            if isinstance(step, ThinkingDelta | TextDelta) and (now := time.monotonic()) - frame_sent >= pace:
                frame_sent = now
                yield shown.frame(), ""

    def _pump(self, reply: ReplyRequest, turn: Turn | None = None) -> EventPump[Step]:
        """The reply's steps, stepped on this handler's worker threads; closing it (``aclose``)
        sets the cancel event and closes the pipeline, which stops generation and frees the model."""
        cancel = threading.Event()
        steps = self.pipeline.run(reply, cancel=cancel)
        return EventPump(turn.track(steps) if turn is not None else steps, cancel, self.budget)

    def validate(self, message: Any, request: gr.Request = None) -> dict[str, Any]:
        """Refuse a blank, blocked or over-long message before it enters the chat: it stays in the
        textbox (nothing is lost), the refusal shows beneath it in the page's language, and
        nothing is sent or saved."""
        text = message if isinstance(message, str) else ""
        lang = page_language(text, request)
        if not text.strip():
            return gr.validate(False, t("error.empty", lang))
        try:
            # Local rules and limits only: the engine runs the full check, external moderation
            # included, when the message is sent; doing that here too would call the service twice.
            self.engine.check_input([Message("user", text)], moderate=False)
        except ChatError as exc:
            return gr.validate(False, exc.user_message(lang))
        return gr.validate(True, "")
