"""Driving the engine's blocking generators from async routes.

Each ``next()`` runs on a worker thread, one event at a time. A request waiting in the model's
queue holds no thread at all: its polls return at once (``chat.backends.local.queue.POLL_OUTSIDE``) and the
pause between them is an ``anyio.sleep`` on the event loop. The service routes and the page's chat
handlers (chat.ui.handlers) each have their own thread budget: a burst on one way in cannot take
the threads another needs. ``aclose`` sets the cancel event and closes the engine generator, which
stops generation and frees the model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Generator
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request

from chat.backends.local.queue import POLL_OUTSIDE
from chat.messages import Done, Waiting

log = logging.getLogger(__name__)
SERVICE_THREADS = 32
CLOSE_WAIT = 60.0  # seconds ``aclose`` waits for a step still running (cancel is set: it ends soon)
WAIT_POLL = 0.1  # seconds between a queued request's looks at the queue
_END = object()
T = TypeVar("T")  # what the pumped generator yields: engine events, or the pipeline's steps


class ThreadBudget:
    """The worker threads one app's service routes may use at once.

    The limiter is made on first use, inside the app's event loop, which it then belongs to.
    """

    def __init__(self, threads: int = SERVICE_THREADS) -> None:
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return self._limiter


class EventPump(Generic[T]):
    """``async for event in EventPump(events, cancel, budget)``; always ``await pump.aclose()``.

    ``events`` is stepped only under a lock, so ``aclose`` waits for a step still running: a native
    ``task.cancel()`` (Gradio's Stop) abandons the awaiting thread, which an anyio shield cannot
    prevent, and closing a generator another thread is inside raises ``ValueError``.
    """

    def __init__(self, events: Generator[T, Any, Any], cancel: threading.Event, budget: ThreadBudget) -> None:
        self._events = events
        self.cancel = cancel
        self._budget = budget
        self._closed = False
        self._queued = False  # the last event was a queue position: wait before the next look
        self._stepping = threading.Lock()  # held by the worker thread inside ``events``

    def __aiter__(self) -> EventPump[T]:
        return self

    async def __anext__(self) -> T:
        if self._queued:
            await anyio.sleep(WAIT_POLL)
        event = await anyio.to_thread.run_sync(self._next, limiter=self._budget.limiter)
        if event is _END:
            raise StopAsyncIteration
        self._queued = isinstance(event, Waiting)
        return event  # type: ignore[return-value]

    async def batches(self) -> AsyncIterator[list[T]]:
        """Events in runs, one thread hop per run, for callers that only need the end result.

        A run stops after a ``Waiting`` (the request is queued: the thread is given back between
        polls) or at ``Done``; a cache hit or a whole generation is then one hop, not one per token.
        """
        while True:
            if self._queued:
                await anyio.sleep(WAIT_POLL)
            run = await anyio.to_thread.run_sync(self._run, limiter=self._budget.limiter)
            if not run:
                return
            self._queued = isinstance(run[-1], Waiting)
            yield run

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.cancel.set()  # a step still running ends within a token or a poll
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close, limiter=self._budget.limiter)

    def _next(self) -> object:
        with self._stepping:
            token = POLL_OUTSIDE.set(True)
            try:
                return next(self._events, _END)
            finally:
                POLL_OUTSIDE.reset(token)

    def _run(self) -> list[T]:
        run: list[T] = []
        with self._stepping:
            token = POLL_OUTSIDE.set(True)
            try:
                for event in self._events:  # breaking out leaves the generator open for the next run
                    run.append(event)
                    if isinstance(event, (Waiting, Done)):
                        break
            finally:
                POLL_OUTSIDE.reset(token)
        return run

    def _close(self) -> None:
        if not self._stepping.acquire(timeout=CLOSE_WAIT):  # a step that ignores cancel
            log.warning("a reply's step outlived its cancel by %.0f s; it is closed when it ends", CLOSE_WAIT)
            return  # the generator is closed when the collector takes it, after that step
        try:
            self._events.close()
        finally:
            self._stepping.release()


async def cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the HTTP client goes away (run it beside a non-streaming reply)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return
