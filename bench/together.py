"""Users released at one moment: the load every "several at once" bench measures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def released_together(users: int, work: Callable[[int, Callable[[], None]], T]) -> tuple[list[T], float]:
    """Run ``work(i, ready)`` on ``users`` threads. Each calls ``ready()`` once set up (a client
    made, say); it returns when all are, so the timed part starts for everyone at once. Returns
    the results in user order and that moment (``time.perf_counter``)."""
    results: list[T] = [None] * users  # type: ignore[list-item] - each is set before it is read
    gate = threading.Barrier(users + 1)

    def user(i: int) -> None:
        results[i] = work(i, gate.wait)

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return results, start
