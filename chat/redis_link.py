"""One Redis the replicas share (``CHAT_REDIS_URL``), and whether it answers right now.

The rate limit and the response cache go through it while it answers and fall back to this
process's memory while it does not: an outage costs the count across replicas, never an answer.
An outage is logged once when it starts and once when it ends; while it lasts Redis is tried
again at most every ``RETRY_SECONDS``, so requests do not each wait on a dead socket.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TIMEOUT = 0.5  # seconds to connect or answer; a Redis on the same LAN answers in under 1 ms
RETRY_SECONDS = 5.0  # while Redis is down, how often one request tries it again
SCHEMES = ("redis", "rediss", "unix")


def safe_redis_url(url: str) -> str:
    """The URL without user or password, for logs and ``/readyz``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is away or refuses (never a bug of ours)."""
    import redis

    return (redis.exceptions.RedisError, OSError)


class RedisLink:
    """A connection pool to one Redis and its state: up, or down since when and why."""

    def __init__(
        self, url: str, *, retry_seconds: float = RETRY_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.safe_url = safe_redis_url(url)
        # One retry without a pause: a pooled connection Redis closed (a restart) reconnects once
        # instead of counting as an outage; redis-py's default of three with backoff would make
        # every call wait while Redis is really down.
        self.client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 1)
        )
        self.errors = redis_errors()
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self.reason = ""

    @property
    def up(self) -> bool:
        return self._down_since is None

    def available(self) -> bool:
        """Worth a call now: up, or down long enough that one caller should try it again."""
        if self._down_since is None:
            return True
        with self._lock:
            if self._clock() < self._retry_at:
                return False
            self._retry_at = self._clock() + self.retry_seconds  # this caller tries; the rest wait
            return True

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                log.warning(
                    "Redis at %s answers again after %.0f s: rate limits and the reply cache are shared again",
                    self.safe_url,
                    self._clock() - self._down_since,
                )
                self._down_since, self.reason = None, ""

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            now = self._clock()
            self.reason = f"unreachable ({type(exc).__name__})"
            self._retry_at = now + self.retry_seconds
            if self._down_since is None:
                self._down_since = now
                log.error(
                    "Redis at %s does not answer (%s): rate limits and the reply cache count in this "
                    "process only until it does",
                    self.safe_url,
                    type(exc).__name__,
                )

    def ping(self) -> bool:
        """Ask Redis now (when due); True when it answered."""
        if not self.available():
            return False
        try:
            self.client.ping()
        except self.errors as exc:
            self.failed(exc)
            return False
        self.succeeded()
        return True

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` shows: reachable or not, and what the replicas share meanwhile."""
        if self.ping():
            return {"url": self.safe_url, "reachable": True, "limits_and_cache": "shared"}
        return {
            "url": self.safe_url,
            "reachable": False,
            "reason": self.reason,
            "limits_and_cache": "this process only",
        }


@functools.cache
def shared_link(url: str) -> RedisLink:
    """The process's one link to ``url``: the limiter, the cache and ``/readyz`` see one state."""
    return RedisLink(url)
