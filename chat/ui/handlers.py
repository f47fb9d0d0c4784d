"""The page's handlers: the streaming chat, the public ``/chat`` API, validation, files, feedback.

All the work happens in the reply pipeline; this module only converts between Gradio's shapes and
the engine's messages and events, and turns errors into readable messages.

The chat handlers are async generators that drive the pipeline through
``chat.service.async_bridge.EventPump``: each step of generation runs on a worker thread, and a request
waiting for the model holds none (Gradio runs a sync generator's every step on a thread, and a
queued request's step would block there until its turn).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Generator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from cachetools import LRUCache

from chat.engine import ChatEngine
from chat.engine.reasoning import THINKING_ID
from chat.errors import ChatError, InvalidRequest
from chat.i18n import Lang, detect_language, request_language, t, translated
from chat.messages import (
    GenerationParams,
    Message,
    Notice,
    Stats,
    TextDelta,
    ThinkingDelta,
    ToolUse,
    Waiting,
    content_text,
)
from chat.reply import transcript
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
from chat.ui.knowledge import sources_bubble
from chat.ui.tool_blocks import tool_block

log = logging.getLogger(__name__)


def history_to_messages(history: Sequence[dict[str, Any]] | None) -> list[Message]:
    """Gradio history (UI dicts with part lists, or API dicts with strings) to engine messages.

    Notice and error bubbles (messages with a metadata title) are display-only and left out,
    and so is a user message that got no reply (refused, failed or stopped while waiting): it
    stays on screen, but it is not context for the model, nor checked again by the guards.
    """
    messages: list[Message] = []
    for item in history or []:
        if not isinstance(item, dict):
            raise InvalidRequest(reason="invalid.history")
        if (item.get("metadata") or {}).get("title"):
            continue
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(reason="invalid.history_role", role=repr(role))
        text = content_text(item.get("content"))
        if messages and messages[-1].role == role == "assistant":  # several bubbles of one reply
            messages[-1] = Message(role, messages[-1].content + "\n\n" + text)
        elif messages and messages[-1].role == role == "user":  # the earlier one went unanswered
            messages[-1] = Message(role, text)
        else:
            messages.append(Message(role, text))
    if messages and messages[-1].role == "user":
        messages.pop()
    return messages


def build_params(temperature: Any, context_length: Any, max_new_tokens: Any, top_p: Any) -> GenerationParams:
    return GenerationParams(
        temperature=temperature, context_length=context_length, max_new_tokens=max_new_tokens, top_p=top_p
    )


def build_request(message: Any, history: Any, system_prompt: Any) -> list[Message]:
    if not isinstance(message, str):
        raise InvalidRequest(reason="invalid.not_text", field="message", kind=type(message).__name__)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidRequest(
            reason="invalid.not_text", field="system_prompt", kind=type(system_prompt).__name__
        )
    if history is not None and not isinstance(history, list):
        raise InvalidRequest(reason="invalid.history")
    system = [Message("system", system_prompt)] if system_prompt and system_prompt.strip() else []
    return [*system, *history_to_messages(history), Message("user", message)]


def format_stats(stats: Stats, lang: Lang = "en") -> str:
    """One line under the chat: who answered, how fast, and anything unusual about it."""
    parts = [f"**{stats.backend}** · `{stats.model}`"]
    if stats.from_cache:
        parts.append(t("stats.from_cache", lang))
    else:
        parts.append(t("stats.tokens", lang, n=stats.completion_tokens))
        if stats.time_to_first_token is not None:
            parts.append(t("stats.first_token", lang, ms=f"{stats.time_to_first_token * 1000:.0f}"))
        if stats.tokens_per_second:
            parts.append(f"{stats.tokens_per_second:.1f} tok/s")
        if stats.cached_prompt_tokens is not None and stats.evaluated_prompt_tokens is not None:
            parts.append(
                t(
                    "stats.prompt_cache",
                    lang,
                    cached=stats.cached_prompt_tokens,
                    evaluated=stats.evaluated_prompt_tokens,
                )
            )
    if stats.fallback:
        parts.append(t("stats.fallback", lang))
    if stats.retries:
        parts.append(t("stats.retries", lang, n=stats.retries))
    if stats.dropped_messages:
        parts.append(t("stats.dropped", lang, n=stats.dropped_messages))
    if stats.finish_reason not in ("stop", ""):
        parts.append(t("stats.finish", lang, reason=stats.finish_reason))
    return " · ".join(parts)


STOP_WAIT = 5.0  # seconds Stop's mark waits for the reply's generator to close
# The growing reply reaches a new chat's page at most 20 times a second: every frame costs the
# server a diff of the chat and the browser a re-render of the reply's Markdown. A reply of 150
# chunks 10 ms apart took Chromium 3.3 s of CPU at a frame per chunk, 1.8 s at this pace (2 cores,
# headless): a fast model kept a phone busy for frames the eye cannot tell apart. The reply's end
# always arrives whole. A frame costs the page more the longer the conversation (Gradio copies
# the whole chat for each), so the pace slows with it (frame_seconds): on a CPU 4x slower, after 30
# turns, a 200-word reply at 60 words a second ended on the page 8.6 s after the server sent it at
# 20 frames a second, 0.6 s at this pace (bench/bench_stream_frames.py).
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


class _Turn:
    """One page reply, as Stop sees it: whether the page was sent its outcome (then Stop marks
    nothing), and an event set once its steps are closed (ended, failed or stopped)."""

    def __init__(self) -> None:
        self.ended = False
        self.closed = threading.Event()
        self.stopped: tuple[str, str] | None = None  # the turn Stop marked (_turn_key)
        self.mark: gr.ChatMessage | None = None  # and the mark it added
        self.marked_reply: list[Any] = []  # the reply's messages as the page showed them at Stop

    def track(self, steps: Generator[Step, None, None]) -> Generator[Step, None, None]:
        try:
            yield from steps
        finally:
            steps.close()  # the pipeline has stopped generation and kept the turn before Stop marks it
            self.closed.set()


class ChatHandlers:
    """The entry points into the engine from Gradio: the UI's chat and the public ``/chat`` API.

    Both are async generators whose pipeline steps run on ``self.budget``'s worker threads, not on
    Gradio's 40-thread limiter: that one is shared by the page's other events (the conversation
    list, uploads, exports), which a busy chat would otherwise starve, and the service routes have
    their own budget too. It is sized to the page's chat and ``/chat`` both running
    ``CHAT_CONCURRENCY`` replies, each holding a thread only while a step of it runs: a reply
    waiting for the model holds none.
    """

    def __init__(self, engine: ChatEngine | Pipeline, *, feedback: FeedbackLog | None = None) -> None:
        # The app hands in the service's tracked pipeline (metrics, request log); tests an engine.
        self.pipeline = engine if isinstance(engine, Pipeline) else Pipeline(engine)
        self.engine = self.pipeline.engine
        self.feedback = feedback
        self.exports = ExportFolder()
        # session -> (history length, message) of its last request: the same pair again is a
        # Retry/regenerate, which must not be answered from the cache.
        self._last_request: LRUCache[str, tuple[int, str]] = LRUCache(maxsize=10_000)
        # session -> its newest page reply, for Stop's mark
        self._turns: LRUCache[str, _Turn] = LRUCache(maxsize=10_000)
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
        lang = detect_language(message if isinstance(message, str) else "")
        notices: list[gr.ChatMessage] = []
        text = thinking = ""  # thinking: a reasoning model's, shown collapsed before the reply
        waiting_shown, waiting_sent = "", 0.0  # the queue notice last sent, and when
        frame_sent = 0.0  # when the growing reply was last sent (at most one frame per FRAME_SECONDS)
        turn = self._turns[getattr(request, "session_hash", None) or ""] = _Turn()
        pump: EventPump[Step] | None = None
        try:
            messages = build_request(message, history, system_prompt)
            params = build_params(temperature, context_length, max_new_tokens, top_p)
            pace = frame_seconds(messages)
            reply = ReplyRequest(
                messages=messages,
                params=params,
                backend=backend or None,
                api_key=(api_key or "").strip() or None,
                use_cache=bool(use_cache) and not self._is_regenerate(request, history, message),
                conversation=conversation,
                knowledge=knowledge or None,
            )
            pump = self._pump(reply, turn)
            async for step in pump:
                # Set here, not in the worker: a step Stop abandoned may still end in an outcome
                # that the page never gets (then the reply is marked stopped).
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
                            yield [*notices, _notice(waiting)], ""
                    case Notice(kind="blocked"):
                        pass  # the refusal replaces the whole reply
                    case Notice(text=notice):
                        notices.append(_notice(notice))
                    case ToolUse():  # a collapsed block per call, before the reply
                        notices.append(tool_block(step, lang))
                    case ThinkingDelta(text=delta) | TextDelta(text=delta):
                        if isinstance(step, ThinkingDelta):
                            thinking += delta
                        else:
                            text += delta
                        if (now := time.monotonic()) - frame_sent >= pace:
                            frame_sent = now
                            yield [*notices, *_so_far(thinking, text, lang)], ""
                    case Refusal(stage="input", text=refusal):
                        yield [*notices, _notice("⚠️ " + refusal)], ""
                    case Failure(error=error):
                        error_bubble = _notice("⚠️ " + _user_message(error, lang))
                        yield [*notices, *_so_far(thinking, text, lang), error_bubble], ""
                    case Cancelled():
                        cut = _so_far(step.thinking, step.text, lang)
                        yield [*notices, *cut, stopped_mark(lang)], format_stats(step.stats, lang)
                    case Reply():
                        reply_bubbles = [*thinking_bubble(step.thinking, lang), gr.ChatMessage(step.text)]
                        sources = sources_bubble(step.sources, lang)
                        yield [*notices, *reply_bubbles, *sources], format_stats(step.stats, lang)
                    case Refusal():  # an output refusal withholds the thinking with the reply
                        yield [*notices, gr.ChatMessage(step.text)], format_stats(step.stats, lang)
        except Exception as exc:  # noqa: BLE001 - the UI seam: every failure becomes a readable bubble
            turn.ended = True
            error = _notice("⚠️ " + _user_message(exc, lang))
            yield [*notices, *([gr.ChatMessage(text)] if text else []), error], ""
        finally:  # also on Stop (Gradio cancels the task) and a closed tab (Gradio closes us)
            if pump is not None:
                await pump.aclose()

    async def api(
        self,
        message: str,
        history: list[dict[str, Any]] | None = None,
        system_prompt: str = "",
        temperature: float = 0.7,
        context_length: int = 2048,
        max_new_tokens: int = 512,
        top_p: float = 0.95,
        knowledge: str = "",
    ) -> AsyncIterator[str]:
        """Stream a reply for ``message`` after the optional OpenAI-style ``history``; with
        ``knowledge`` (a knowledge base name) it answers from that knowledge base, as
        ``/api/chat``'s ``context.knowledge`` does.

        Yields the reply so far (``predict`` returns the final text). Errors arrive as a
        readable message (``gradio_client.exceptions.AppError``).
        """
        lang = detect_language(message if isinstance(message, str) else "")
        text = ""
        pump: EventPump[Step] | None = None
        try:
            messages = build_request(message, history, system_prompt)
            params = build_params(temperature, context_length, max_new_tokens, top_p)
            reply = ReplyRequest(messages=messages, params=params, knowledge=_knowledge_name(knowledge))
            pump = self._pump(reply)
            async for step in pump:
                match step:
                    case TextDelta():
                        text += step.text
                        yield text
                    case Refusal(stage="input"):
                        raise gr.Error(step.text, print_exception=False)
                    case Failure(error=error):
                        raise gr.Error(_user_message(error, lang), print_exception=False)
                    case Reply() | Refusal() | Cancelled() if step.text != text:
                        yield step.text
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - the API seam: a readable message, never internals
            raise gr.Error(_user_message(exc, lang), print_exception=False) from None
        finally:
            if pump is not None:
                await pump.aclose()

    def _pump(self, reply: ReplyRequest, turn: _Turn | None = None) -> EventPump[Step]:
        """The reply's steps, stepped on this handler's worker threads; closing it (``aclose``)
        sets the cancel event and closes the pipeline, which stops generation and frees the model."""
        cancel = threading.Event()
        steps = self.pipeline.run(reply, cancel=cancel)
        return EventPump(turn.track(steps) if turn is not None else steps, cancel, self.budget)

    def attach_stop_mark(self, demo: gr.Blocks, chat: gr.ChatInterface) -> None:
        """Mark a reply Stop cuts short (inside ``with demo:``). ChatInterface copies the chatbot
        into its own history when the cancelled reply ends, in a request of its own that may be
        handled before or after the mark's, and taken from a page that may have got a late word or
        two of the reply after Stop: ChatInterface's copies (``keep_mark`` replaces them) take the
        reply as Stop marked it, so the next turn shows the cut reply as the page showed it."""
        self._chatbot = chat.chatbot
        chat.textbox.stop(
            self.mark_stopped, chat.chatbot, chat.chatbot, queue=False, api_visibility="private"
        ).then(
            self.keep_mark,
            chat.chatbot,
            [chat.chatbot_state, chat.chatbot_value],
            queue=False,
            api_visibility="private",
        )
        for block_fn in demo.fns.values():
            if block_fn.inputs == [chat.chatbot] and block_fn.outputs == [
                chat.chatbot_state,
                chat.chatbot_value,
            ]:
                block_fn.fn = self.keep_mark  # Gradio has no hook for it: its copy is ``lambda x: (x, x)``

    def keep_mark(self, history: list[dict[str, Any]] | None, request: gr.Request = None) -> tuple[Any, Any]:
        """The chatbot's messages as ChatInterface's history (its state and value). A copy made
        from the page before Stop's mark arrived, of the turn Stop marked, gets the reply as Stop
        marked it: a word or two that reached the page after Stop would otherwise show up in the
        cut reply when the next turn renders the history."""
        turn = self._turns.get(getattr(request, "session_hash", None) or "")
        if (
            turn is not None
            and turn.mark is not None
            and turn.stopped is not None
            and history
            and not _is_stopped_mark(history[-1])
            and _same_turn(history, turn.stopped)
        ):
            mark = self._chatbot.preprocess(self._chatbot.postprocess([turn.mark]))
            history = [*history[: _asked(history)], *turn.marked_reply, *mark]
        return history, history

    def mark_stopped(self, history: list[dict[str, Any]] | None, request: gr.Request = None) -> Any:
        """Stop's own handler: Gradio closes the reply's generator and keeps its last frame, so
        the cut reply (its partial text stays) gets a "Stopped" mark after it, in the language
        of the message it answers. It waits until the reply is closed, so no late frame of the
        reply can overwrite the mark. A reply that had already ended, or is marked, is left alone."""
        turn = self._turns.get(getattr(request, "session_hash", None) or "")
        if turn is None or turn.ended or not history or _is_stopped_mark(history[-1]):
            return gr.skip()
        turn.closed.wait(STOP_WAIT)
        users = [m for m in history if isinstance(m, dict) and m.get("role") == "user"]
        lang = detect_language(content_text(users[-1].get("content")) if users else "")
        turn.stopped, turn.mark = _turn_key(history), stopped_mark(lang)
        turn.marked_reply = history[_asked(history) :]
        return [*history, turn.mark]

    def validate(self, message: Any) -> dict[str, Any]:
        """Refuse a blocked or over-long message before it enters the chat: it stays in the
        textbox (nothing is lost), the refusal shows beneath it, and it is never saved."""
        text = message if isinstance(message, str) else ""
        try:
            # Local rules and limits only: the engine runs the full check, external moderation
            # included, when the message is sent; doing that here too would call the service twice.
            self.engine.check_input([Message("user", text)], moderate=False)
        except ChatError as exc:
            return gr.validate(False, exc.user_message(detect_language(text)))
        return gr.validate(True, "")

    # -- conversation files and feedback ------------------------------------------------------

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


def _knowledge_name(value: Any) -> str | None:
    """``/chat``'s ``knowledge``: a name, or nothing (empty or missing: no knowledge base)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(reason="invalid.not_text", field="knowledge", kind=type(value).__name__)
    return value.strip() or None


def _user_message(exc: Exception, lang: Lang) -> str:
    """A ``ChatError``'s own sentence; anything else is a bug: logged in full, shown generically."""
    if isinstance(exc, ChatError):
        return exc.user_message(lang)
    log.exception("unexpected error in a chat request")
    return t("error.internal", lang)


def _notice(text: str) -> gr.ChatMessage:
    return gr.ChatMessage(content="", metadata={"title": text, "status": "done"})


def thinking_bubble(thinking: str, lang: Lang) -> list[gr.ChatMessage]:
    """A reasoning model's thinking as a collapsed titled bubble ("Thinking" / "思考过程") before
    the reply; none without thinking. Titled, so ``history_to_messages`` never sends it back."""
    thinking = thinking.strip()
    if not thinking:
        return []
    metadata = {"title": t("thinking.title", lang), "status": "done", "id": THINKING_ID}
    return [gr.ChatMessage(content=thinking, metadata=metadata)]


STOPPED_ID = "stopped"  # the mark's metadata id: display-only, like every titled bubble


def stopped_mark(lang: Lang) -> gr.ChatMessage:
    """The bubble under a reply that Stop cut short ("■ Stopped." / "■ 已停止。"); for a page that
    shows a stored reply whose status is ``stopped`` too."""
    return gr.ChatMessage(
        content="", metadata={"title": "■ " + t("notice.stopped", lang), "status": "done", "id": STOPPED_ID}
    )


def interrupted_mark(lang: Lang) -> gr.ChatMessage:
    """The bubble under a stored reply the server never finished (it stopped or crashed mid-reply):
    the partial text is shown, and said to be partial."""
    return gr.ChatMessage(
        content="", metadata={"title": "⚠️ " + t("notice.interrupted", lang), "status": "done"}
    )


def _so_far(thinking: str, text: str, lang: Lang) -> list[gr.ChatMessage]:
    """A reply as far as it got: its thinking (collapsed), then its text when there is any."""
    return [*thinking_bubble(thinking, lang), *([gr.ChatMessage(text)] if text else [])]


def _same_turn(history: list[Any], stopped: tuple[str, str]) -> bool:
    """``history`` is the turn Stop marked, its reply perhaps a word or two longer (words that
    reached the page after Stop), and not another one (an Undo, another conversation opened)."""
    asked, reply = _turn_key(history)
    return asked == stopped[0] and reply.startswith(stopped[1])


def _asked(history: list[Any]) -> int:
    """How many messages lead up to the reply: those up to the last user message."""
    roles = [m.get("role") if isinstance(m, dict) else None for m in history]
    return max((i + 1 for i, role in enumerate(roles) if role == "user"), default=0)


def _turn_key(history: list[Any]) -> tuple[str, str]:
    """A digest of the messages up to the last user message, and the reply's text after it:
    what tells one turn from another, kept per session without keeping its history."""
    texts = [
        (m.get("role", ""), content_text(m.get("content"))) if isinstance(m, dict) else ("", "")
        for m in history
    ]
    asked = _asked(history)
    digest = hashlib.sha256(json.dumps(texts[:asked], ensure_ascii=False).encode()).hexdigest()
    return digest, "".join(text for _, text in texts[asked:])


def _is_stopped_mark(message: Any) -> bool:
    metadata = (
        message.get("metadata") if isinstance(message, dict) else getattr(message, "metadata", None)
    ) or {}
    return metadata.get("id") == STOPPED_ID
