"""A moving one-minute window per client: N requests per minute, with the ``limits`` library.

``chat.service.door.access`` (the door) decides what counts (one chat message, once, whatever way it
came in) and who the client is; this module only counts.
"""

from __future__ import annotations

import math
import time


class ClientLimiter:
    """A moving one-minute window per client key, kept in this process's memory.

    Replicas behind nginx with sticky sessions each see all of one client's requests, so the
    per-replica window is the client's window.
    """

    def __init__(self, per_minute: int) -> None:
        # Imported here: ``limits`` takes ~0.1 s to import, and most installs never turn it on.
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def wait(self, client: str) -> int | None:
        """Like ``hit`` without counting: ``None`` if one more is allowed now."""
        if self._limiter.test(self._item, "chat", client):
            return None
        return self._retry_after(client)

    def hit(self, client: str) -> int | None:
        """Count one request; ``None`` if allowed, else the seconds until one is allowed again."""
        if self._limiter.hit(self._item, "chat", client):
            return None
        return self._retry_after(client)

    def _retry_after(self, client: str) -> int:
        reset = self._limiter.get_window_stats(self._item, "chat", client).reset_time
        return max(1, math.ceil(reset - time.time()))
