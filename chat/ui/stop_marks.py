"""Stop on the page: the "Stopped" mark under a reply Stop cut short, and ChatInterface's copies
of the chat that must keep the reply as Stop marked it.

``StopMarks`` is a part of ``chat.ui.handlers.ChatHandlers``: the chat handler registers each page
reply as a ``Turn`` (``self._turns``), and Stop's handlers read it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Generator
from typing import Any

import gradio as gr
from cachetools import LRUCache

from chat.i18n import detect_language
from chat.messages import content_text
from chat.reply.turn import Step
from chat.ui.bubbles import is_stopped_mark, stopped_mark

STOP_WAIT = 5.0  # seconds Stop's mark waits for the reply's generator to close


class Turn:
    """One page reply, as Stop sees it: whether the page was sent its outcome (then Stop marks
    nothing), and an event set once its steps are closed (ended, failed or stopped)."""

    def __init__(self) -> None:
        self.ended = False
        self.closed = threading.Event()
        self.stopped: tuple[str, str] | None = None  # the turn Stop marked (turn_key)
        self.mark: gr.ChatMessage | None = None  # and the mark it added
        self.marked_reply: list[Any] = []  # the reply's messages as the page showed them at Stop

    def track(self, steps: Generator[Step, None, None]) -> Generator[Step, None, None]:
        try:
            yield from steps
        finally:
            steps.close()  # the pipeline has stopped generation and kept the turn before Stop marks it
            self.closed.set()


class StopMarks:
    """Stop's handlers over the page's replies, one ``Turn`` per session (the newest)."""

    def __init__(self) -> None:
        self._turns: LRUCache[str, Turn] = LRUCache(maxsize=10_000)

    def new_turn(self, request: gr.Request | None) -> Turn:
        turn = self._turns[getattr(request, "session_hash", None) or ""] = Turn()
        return turn

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
            and not is_stopped_mark(history[-1])
            and same_turn(history, turn.stopped)
        ):
            mark = self._chatbot.preprocess(self._chatbot.postprocess([turn.mark]))
            history = [*history[: asked(history)], *turn.marked_reply, *mark]
        return history, history

    def mark_stopped(self, history: list[dict[str, Any]] | None, request: gr.Request = None) -> Any:
        """Stop's own handler: Gradio closes the reply's generator and keeps its last frame, so
        the cut reply (its partial text stays) gets a "Stopped" mark after it, in the language
        of the message it answers. It waits until the reply is closed, so no late frame of the
        reply can overwrite the mark. A reply that had already ended, or is marked, is left alone."""
        turn = self._turns.get(getattr(request, "session_hash", None) or "")
        if turn is None or turn.ended or not history or is_stopped_mark(history[-1]):
            return gr.skip()
        turn.closed.wait(STOP_WAIT)
        users = [m for m in history if isinstance(m, dict) and m.get("role") == "user"]
        lang = detect_language(content_text(users[-1].get("content")) if users else "")
        turn.stopped, turn.mark = turn_key(history), stopped_mark(lang)
        turn.marked_reply = history[asked(history) :]
        return [*history, turn.mark]


def same_turn(history: list[Any], stopped: tuple[str, str]) -> bool:
    """``history`` is the turn Stop marked, its reply perhaps a word or two longer (words that
    reached the page after Stop), and not another one (an Undo, another conversation opened)."""
    question, reply = turn_key(history)
    return question == stopped[0] and reply.startswith(stopped[1])


def asked(history: list[Any]) -> int:
    """How many messages lead up to the reply: those up to the last user message."""
    roles = [m.get("role") if isinstance(m, dict) else None for m in history]
    return max((i + 1 for i, role in enumerate(roles) if role == "user"), default=0)


def turn_key(history: list[Any]) -> tuple[str, str]:
    """A digest of the messages up to the last user message, and the reply's text after it:
    what tells one turn from another, kept per session without keeping its history."""
    texts = [
        (m.get("role", ""), content_text(m.get("content"))) if isinstance(m, dict) else ("", "")
        for m in history
    ]
    upto = asked(history)
    digest = hashlib.sha256(json.dumps(texts[:upto], ensure_ascii=False).encode()).hexdigest()
    return digest, "".join(text for _, text in texts[upto:])
