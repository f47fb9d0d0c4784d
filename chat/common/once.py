"""One object per process, built on first use: ``Once(build)()`` returns it.

For what is costly to build or must not exist twice (a model loaded into memory, a C library's
process-wide callback, a connection pool). The lock makes two threads that ask at the same time
share one build rather than race to make two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    """Builds with ``build`` on the first call; again only when ``stale`` says the one held is
    no longer usable (a closed connection pool)."""

    def __init__(self, build: Callable[[], T], stale: Callable[[T], bool] | None = None) -> None:
        self._build = build
        self._stale = stale
        self._lock = threading.Lock()
        self._value: T | None = None

    def __call__(self) -> T:
        with self._lock:
            if self._value is None or (self._stale is not None and self._stale(self._value)):
                self._value = self._build()
            return self._value


__all__ = ["Once"]
