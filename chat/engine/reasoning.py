"""Reasoning models: their "thinking" kept apart from the reply.

DeepSeek-R1, Qwen3 and similar models think before they answer, either inline between
``<think>`` and ``</think>`` (local GGUF models, servers without a reasoning parser) or in a
separate ``reasoning_content`` field (cloud APIs; ``chat.backends.openai_compat`` yields that as
``ThinkingDelta``). The page shows the thinking as a collapsed block; it is not the reply, so it
is not stored, cached, exported or counted as reply text, and it is never sent back to the model:
it is long, and providers ask for it to be left out of the next request.

``ThinkSplitter`` cuts a stream into reply text and thinking even when a tag is split across
deltas; ``ReplyParts`` adds the output guard (the thinking is shown too, so it is checked too);
``without_thinking`` removes thinking from a conversation's assistant messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from chat.messages import Message, TextDelta, ThinkingDelta

if TYPE_CHECKING:
    from chat.engine.protocols import OutputFilter

OPEN, CLOSE = "<think>", "</think>"
BLOCK_SEPARATOR = "\n\n"  # between two thinking blocks of one reply
THINKING_ID = "thinking"  # the page's thinking bubble carries this metadata id

Part = TextDelta | ThinkingDelta


class ThinkSplitter:
    """Splits streamed text at ``<think>`` / ``</think>`` into ``TextDelta`` and ``ThinkingDelta``.

    A tag cut across deltas is held back until the next delta says whether it is one (or until
    ``flush``). Whitespace right after a tag is dropped ("</think>\\n\\nAnswer" starts the reply
    at "Answer"), and an unclosed block is thinking to the end. A closing tag before any opening
    one means the chat template opened the block in the prompt (DeepSeek-R1 distills, QwQ): what
    came before it was thinking. That text has streamed as reply by then, so ``late_close``
    notes where it ends and ``settle`` moves it to the thinking once the reply is complete.

    >>> s = ThinkSplitter()
    >>> s.feed("<thi") + s.feed("nk>hmm</think> Hi") + s.flush()
    [ThinkingDelta(text='hmm'), TextDelta(text='Hi')]
    """

    def __init__(self) -> None:
        self._inside = False
        self._held = ""  # the end of the last delta, when it may be the start of a tag
        self._after_tag = False  # drop whitespace until the next visible character
        self._thought = False  # some thinking was emitted: a new block starts with a separator
        self._new_block = False
        self._opened = False  # an opening tag was seen
        self._reply_chars = 0  # reply text emitted so far
        self.late_close: int | None = None  # reply characters before a closing tag with no opening

    def feed(self, text: str) -> list[Part]:
        """The parts of ``text`` that are decided (a possible partial tag waits)."""
        if not self._held and not self._inside and not self._after_tag and "<" not in text:
            self._reply_chars += len(text)
            return [TextDelta(text)] if text else []  # the common case: plain reply text
        text = self._held + text
        self._held = ""
        parts: list[Part] = []
        while text:
            at, tag = _first_tag(text, (CLOSE,) if self._inside else (OPEN, CLOSE))
            if tag is None:
                keep = _partial_tag(text, CLOSE if self._inside else OPEN)
                self._emit(parts, text[: len(text) - keep])
                self._held = text[len(text) - keep :]
                break
            self._emit(parts, text[:at])
            text = text[at + len(tag) :]
            if tag == OPEN:
                self._inside, self._new_block, self._opened = True, self._thought, True
            elif self._inside:
                self._inside = False
            elif not self._opened and self.late_close is None:
                self.late_close = self._reply_chars
            self._after_tag = True  # any other stray CLOSE is dropped
        return parts

    def flush(self) -> list[Part]:
        """The end of the stream: a held partial tag was text after all."""
        parts: list[Part] = []
        self._emit(parts, self._held)
        self._held = ""
        return parts

    def settle(self, reply: str, thinking: str) -> tuple[str, str]:
        """The finished ``(reply, thinking)``: text before a late closing tag is thinking."""
        if self.late_close is None:
            return reply, thinking.strip()
        early, reply = reply[: self.late_close], reply[self.late_close :]
        return reply, (early.strip() + BLOCK_SEPARATOR + thinking.strip()).strip()

    def _emit(self, parts: list[Part], text: str) -> None:
        if self._after_tag:
            text = text.lstrip()
            if not text:
                return
            self._after_tag = False
        if not text:
            return
        if not self._inside:
            self._reply_chars += len(text)
            parts.append(TextDelta(text))
            return
        if self._new_block:
            text, self._new_block = BLOCK_SEPARATOR + text, False
        self._thought = True
        parts.append(ThinkingDelta(text))


def _first_tag(text: str, tags: tuple[str, ...]) -> tuple[int, str | None]:
    found = [(i, tag) for tag in tags if (i := text.find(tag)) >= 0]
    return min(found) if found else (-1, None)


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that could start ``tag`` (or ``CLOSE``, outside)."""
    start = text.rfind("<", max(0, len(text) - len(CLOSE) + 1))
    if start < 0:
        return 0
    tail = text[start:]
    return len(tail) if tag.startswith(tail) or CLOSE.startswith(tail) else 0


def split(text: str) -> tuple[str, str]:
    """``(reply, thinking)`` of a whole text."""
    splitter = ThinkSplitter()
    parts = splitter.feed(text) + splitter.flush()
    reply = "".join(p.text for p in parts if isinstance(p, TextDelta))
    thinking = "".join(p.text for p in parts if isinstance(p, ThinkingDelta))
    return splitter.settle(reply, thinking)


def without_thinking(messages: Iterable[Message]) -> list[Message]:
    """The conversation with thinking removed from assistant messages (a client may send back
    a reply with its ``<think>`` block); user and system messages are left as written."""
    return [
        replace(m, content=split(m.content)[0]) if m.role == "assistant" and "think>" in m.content else m
        for m in messages
    ]


class ReplyParts:
    """One reply's chunks as guarded parts: reply text and thinking, each through an output
    filter of its own (``new_filter``; None: no guard). A thinking run is flushed before the
    reply text that follows it, so the page shows all of it before the answer starts."""

    def __init__(self, new_filter: Callable[[], OutputFilter] | None) -> None:
        self._splitter = ThinkSplitter()
        self._new_filter = new_filter
        self._reply = new_filter() if new_filter is not None else None
        self._thinking: OutputFilter | None = None

    def feed(self, chunk: str | ThinkingDelta) -> list[Part]:
        """Raise ``OutputBlocked`` when either filter finds a listed phrase."""
        parts = [chunk] if isinstance(chunk, ThinkingDelta) else self._splitter.feed(chunk)
        return self._guarded(parts)

    def flush(self) -> list[Part]:
        parts = self._guarded(self._splitter.flush()) + self._end_thinking()
        tail = self._reply.flush() if self._reply is not None else ""
        return [*parts, TextDelta(tail)] if tail else parts

    def settle(self, reply: str, thinking: str) -> tuple[str, str]:
        """The reply and thinking as kept, from what was shown (see ``ThinkSplitter.settle``)."""
        return self._splitter.settle(reply, thinking)

    def _guarded(self, parts: list[Part]) -> list[Part]:
        out: list[Part] = []
        for part in parts:
            if isinstance(part, ThinkingDelta):
                if self._new_filter is None:
                    out.append(part)
                    continue
                if self._thinking is None:
                    self._thinking = self._new_filter()
                if released := self._thinking.feed(part.text):
                    out.append(ThinkingDelta(released))
            else:
                out += self._end_thinking()
                released = self._reply.feed(part.text) if self._reply is not None else part.text
                if released:
                    out.append(TextDelta(released))
        return out

    def _end_thinking(self) -> list[Part]:
        held, self._thinking = self._thinking, None
        tail = held.flush() if held is not None else ""
        return [ThinkingDelta(tail)] if tail else []
