"""First-come, first-served access to one model, with visible queue positions.

A ``Llama`` object is not thread-safe, and Gradio runs the UI and API events in different
concurrency groups, so the backend serialises generation itself. Waiting is a generator that
wakes every ``poll`` seconds: the caller can show the position, and a cancelled request (Stop,
closed tab) leaves the queue at its next wake-up instead of blocking a worker thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar

from chat.messages import Waiting

# Set by an async caller that waits between polls on its own event loop (chat.service.async_bridge):
# then a poll returns at once, and a queued request holds no worker thread while it waits.
POLL_OUTSIDE: ContextVar[bool] = ContextVar("poll_outside", default=False)


class Cancelled(Exception):
    """The request was cancelled while it waited for its turn."""


class TurnQueue:
    def __init__(self, *, poll: float = 0.2) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._waiting: deque[object] = deque()
        self._busy = False
        self._poll = poll

    def wait_turn(self, cancel: threading.Event | None = None) -> Iterator[Waiting]:
        """Yield ``Waiting`` until it is this caller's turn; on return the caller holds the model.

        The holder must call ``release()`` (a plain lock, so any thread may release it: Gradio
        may close a generator on a different thread from the one that started it).
        """
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
        acquired = False
        try:
            while True:
                with self._cond:
                    if not self._busy and self._waiting[0] is ticket:
                        self._waiting.popleft()
                        self._busy = acquired = True
                        return
                    position = self._waiting.index(ticket) + 1
                    if (cancel is None or not cancel.is_set()) and not POLL_OUTSIDE.get():
                        self._cond.wait(self._poll)
                if cancel is not None and cancel.is_set():
                    raise Cancelled
                yield Waiting(position)
        finally:
            if not acquired:
                with self._cond:
                    if ticket in self._waiting:
                        self._waiting.remove(ticket)
                    self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        """Requests waiting plus the one running."""
        with self._cond:
            return len(self._waiting) + int(self._busy)
