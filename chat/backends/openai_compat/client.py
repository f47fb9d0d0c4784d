"""The HTTP side of the cloud backend: per-phase timeouts and one pooled client per process."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from chat.common.once import Once


@dataclass(frozen=True)
class Timeouts:
    """Seconds: to connect, to wait for the first byte and between chunks, for a whole attempt."""

    connect: float = 5.0
    read: float = 30.0
    total: float = 120.0

    def for_attempt(self, budget: float) -> httpx.Timeout:
        """httpx's per-phase timeouts, none longer than what is left of the request."""
        read = min(self.read, budget)
        return httpx.Timeout(connect=min(self.connect, budget), read=read, write=read, pool=read)


def build_http_client(*, max_connections: int = 256) -> httpx.Client:
    """A pooled client with keep-alive; timeouts are set per request from ``Timeouts``.

    Every connection may stay alive (keep-alive limit = connection limit): httpcore 1.0.9
    closes "surplus" idle connections counting all of them, and can close one already handed
    to a waiting request (encode/httpcore#1110), which under load shows as EBADF or a hang.
    """
    return httpx.Client(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
        timeout=httpx.Timeout(30.0, connect=5.0),
        follow_redirects=False,  # a redirect could carry the Authorization header elsewhere
        trust_env=True,  # honour HTTPS_PROXY / NO_PROXY like any other client
    )


_shared = Once(build_http_client, stale=lambda client: client.is_closed)


def shared_http_client() -> httpx.Client:
    """The process-wide client: one connection pool for all sessions and backends."""
    return _shared()
