"""Total time and cancel for a stream blocked in a socket read.

httpx's read timeout restarts with every chunk, so a slow trickle could run forever, and a
blocked read does not notice a cancel. One daemon thread per process checks every armed stream
and shuts its socket down, which wakes the read at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx


class Watch:
    """One attempt's deadline and cancel flag; ``reason`` says why it was cut."""

    __slots__ = ("deadline", "cancel", "reason", "_sock")

    def __init__(self, deadline: float, cancel: threading.Event | None) -> None:
        self.deadline = deadline
        self.cancel = cancel
        self.reason: str | None = None
        self._sock: socket.socket | None = None

    def arm(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        self._sock = stream.get_extra_info("socket") if stream is not None else None
        if self.reason:
            self.cut()

    def disarm(self) -> None:
        self._sock = None

    def check(self, now: float) -> None:
        if self.reason is None:
            if now >= self.deadline:
                self.reason = "timeout"
            elif self.cancel is not None and self.cancel.is_set():
                self.reason = "cancelled"
            else:
                return
            self.cut()

    def cut(self) -> None:
        """Shut the socket down: wakes a blocked read at once (close alone would not)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """One daemon thread per process cuts streams past their deadline or cancelled."""

    INTERVAL = 0.05

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch, response: httpx.Response) -> None:
        # httpx closes a response, and the pool hands its connection to the next request, the
        # moment the body ends: disarm first, so a late cut never hits a reused socket.
        response.stream = _DisarmFirst(response.stream, lambda: self.remove(watch))
        watch.arm(response)
        with self._cond:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cloud-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, watch: Watch) -> None:
        """After this returns the watch can no longer cut its socket (which may be reused)."""
        with self._cond:
            self._watches.discard(watch)
            watch.disarm()

    def watching(self, watch: Watch) -> bool:
        with self._cond:
            return watch in self._watches

    def __len__(self) -> int:
        with self._cond:
            return len(self._watches)

    def _run(self) -> None:
        while True:
            with self._cond:  # checks run under the lock, so a removed watch is never cut
                while not self._watches:
                    self._cond.wait()
                self._cond.wait(self.INTERVAL)
                now = time.monotonic()
                for watch in self._watches:
                    watch.check(now)


class _DisarmFirst(httpx.SyncByteStream):
    """The response body, calling ``disarm`` when it ends or closes, before the pool sees it."""

    def __init__(self, stream: httpx.SyncByteStream, disarm: Callable[[], None]) -> None:
        self._stream = stream
        self._disarm = disarm

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream
        self._disarm()

    def close(self) -> None:
        self._disarm()
        self._stream.close()


WATCHDOG = Watchdog()
