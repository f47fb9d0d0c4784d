"""Build the engine a ``Settings`` describes: backends (by name, from the registry), fallback
chain, guards, cache."""

from __future__ import annotations

from collections.abc import Callable

from chat.backends import registry
from chat.backends.base import Backend
from chat.backends.registry import build_cloud as build_cloud_backend
from chat.backends.registry import build_local as build_local_backend
from chat.engine import ChatEngine
from chat.engine.cache import ReplyCache
from chat.engine.protocols import ResponseCache
from chat.engine.retry import RetryPolicy
from chat.engine.shared_cache import SharedReplyCache
from chat.guards import build_guard
from chat.redis_link import shared_link
from chat.settings import Settings

__all__ = ["build_cache", "build_cloud_backend", "build_engine", "build_local_backend"]


def build_engine(
    settings: Settings | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    background: bool = False,
) -> ChatEngine:
    """The engine for ``settings``; builds (and loads) only the backends its chain names.

    ``background=True`` downloads a Hub model in a thread (the server can start at once and
    show progress); a local or cached model always loads here, so bad files fail at start-up.
    """
    settings = settings or Settings()
    names = [settings.backend, *(n for n in settings.fallback if n != settings.backend)]
    backends: dict[str, Backend] = {
        name: registry.build(name, settings, progress=progress, background=background) for name in names
    }
    guard = build_guard(settings)
    return ChatEngine(
        backends,
        fallback=names[1:],
        retry=RetryPolicy(max_attempts=settings.max_attempts, total_timeout=settings.total_timeout),
        input_guard=guard,
        output_guard=guard,
        cache=build_cache(settings),
    )


def build_cache(settings: Settings) -> ResponseCache | None:
    """The cache ``settings`` describe: in Redis with ``CHAT_REDIS_URL`` (this one its fallback),
    else in this process; None when it is turned off (``CHAT_CACHE=false``)."""
    if not settings.cache:
        return None
    bounds = {
        "max_entries": settings.cache_max_entries,
        "max_bytes": settings.cache_max_bytes,
        "ttl": settings.cache_ttl,
    }
    local = ReplyCache(**bounds)
    if not settings.redis_url:
        return local
    return SharedReplyCache(shared_link(settings.redis_url), local, **bounds)
