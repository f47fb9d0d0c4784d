"""A moving one-minute window per client: N requests per minute, with the ``limits`` library.

``chat.service.door.access`` (the door) decides what counts (one chat message, once, whatever way it
came in) and who the client is; this module only counts.

With ``CHAT_REDIS_URL`` the window lives in Redis (``limits``' Redis storage, its moving window a
Lua script), so replicas count one client once between them, keyed on a digest of the client's
id. While Redis does not answer, each process counts in its own memory (``chat.redis_link``).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any


class ClientLimiter:
    """A moving one-minute window per client key, in Redis when given one, else in memory."""

    def __init__(self, per_minute: int, *, redis_url: str = "") -> None:
        # Imported here: ``limits`` takes ~0.1 s to import, and most installs never turn it on.
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._shared: Any = None
        if redis_url:
            from limits.storage import RedisStorage

            from chat.redis_link import shared_link

            self._link = shared_link(redis_url)
            storage = RedisStorage("redis://", connection_pool=self._link.client.connection_pool)
            self._shared = MovingWindowRateLimiter(storage)

    def wait(self, client: str) -> int | None:
        """Like ``hit`` without counting: ``None`` if one more is allowed now."""
        return self._ask(client, count=False)

    def hit(self, client: str) -> int | None:
        """Count one request; ``None`` if allowed, else the seconds until one is allowed again."""
        return self._ask(client, count=True)

    def _ask(self, client: str, *, count: bool) -> int | None:
        if self._shared is not None and self._link.available():
            try:
                wait = self._window(self._shared, hashlib.sha256(client.encode()).hexdigest()[:32], count)
            except self._link.errors as exc:
                self._link.failed(exc)
            else:
                self._link.succeeded()
                return wait
        return self._window(self._limiter, client, count)

    def _window(self, limiter: Any, key: str, count: bool) -> int | None:
        allowed = (limiter.hit if count else limiter.test)(self._item, "chat", key)
        if allowed:
            return None
        reset = limiter.get_window_stats(self._item, "chat", key).reset_time
        return max(1, math.ceil(reset - time.time()))
