"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from anyio.from_thread import start_blocking_portal

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(stream: AsyncIterator[T]) -> Iterator[T]:
    """An async generator's items (the page's chat handlers), one at a time for sync test code:
    each is awaited on one event loop in a helper thread; the stream is closed at the end."""
    with start_blocking_portal() as portal:
        try:
            while True:
                try:
                    yield portal.call(stream.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            portal.call(stream.aclose)  # type: ignore[attr-defined]
