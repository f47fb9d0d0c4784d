"""Acting tools wait for the user: a call the model asks for is held until the user says yes.

A tool the operator marks as acting (``acting`` in ``--mcp-config``) is not run on the model's say
so. The loop holds the call under the conversation as it stood (a digest of its messages, never
the text itself), tells the user what would run and how to confirm it, and tells the model it did
not run. When the user's next message in that same conversation is a plain yes ("yes", "ok",
"是", "确认"...), the held call runs first, confirmed, and the model reads its result. Anything
else drops it; so does time (``HOLD_SECONDS``), and only the newest held call per conversation
counts.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence

from cachetools import LRUCache

from chat.messages import Message, ToolCall

HOLD_SECONDS = 600.0  # a held call is forgotten after this long
HELD_MAX = 4096  # conversations with a held call, at most (the oldest go first)
YES = frozenset(
    {"yes", "y", "ok", "okay", "sure", "confirm", "confirmed", "go ahead", "do it"}
    | {"是", "是的", "好", "好的", "确认", "确定", "可以", "同意", "执行"}
)


def is_yes(text: str) -> bool:
    return text.strip().strip(".!。！ ,，").lower() in YES


class HeldCalls:
    """Calls waiting for the user's yes, one per conversation."""

    def __init__(self) -> None:
        self._held: LRUCache[str, tuple[ToolCall, float]] = LRUCache(maxsize=HELD_MAX)
        self._lock = threading.Lock()

    def hold(self, asked: Sequence[Message], call: ToolCall) -> None:
        """Keep ``call`` for the conversation that ends with ``asked``'s newest message."""
        with self._lock:
            self._held[_digest(asked)] = (call, time.monotonic())

    def confirmed(self, messages: Sequence[Message]) -> ToolCall | None:
        """The held call that ``messages``' newest message (a yes) confirms, taken; else None."""
        if len(messages) < 3 or messages[-1].role != "user" or messages[-2].role != "assistant":
            return None
        key = _digest(messages[:-2])
        with self._lock:
            entry = self._held.pop(key, None)
        if entry is None or time.monotonic() - entry[1] > HOLD_SECONDS or not is_yes(messages[-1].content):
            return None
        return entry[0]


def _digest(messages: Sequence[Message]) -> str:
    """A conversation's fingerprint: its user and assistant turns, system prompt aside."""
    turns = [(m.role, m.content) for m in messages if m.role in ("user", "assistant")]
    return hashlib.sha256(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()
