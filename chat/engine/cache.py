"""The response cache: complete replies, keyed on everything that shapes them.

Bounded three ways (entries, total bytes, time to live) and locked, so concurrent sessions
share it safely. The engine decides what may be stored (only ``finish_reason == "stop"``
replies that passed the output guard) and when to bypass it (regenerate, a UI toggle).
Keys are SHA-256 digests; a per-session API key reaches this module only as the engine's
salt (itself a digest), so no key is ever stored or logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence

from cachetools import TTLCache

from chat.backends.base import Backend
from chat.messages import GenerationParams, Message

log = logging.getLogger(__name__)

KEY_VERSION = 1  # bump when the key's contents change, so old entries can never match
ENTRY_OVERHEAD = 64 + 100  # bytes a stored reply costs beyond its text: the key and bookkeeping


def entry_size(text: str) -> int:
    return len(text.encode("utf-8")) + ENTRY_OVERHEAD


class _BoundedTTLCache(TTLCache):
    """A TTLCache bounded by total bytes (its ``maxsize``) and also by a number of entries."""

    def __init__(self, *, max_entries: int, max_bytes: int, ttl: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize=max_bytes, ttl=ttl, timer=timer, getsizeof=entry_size)
        self.max_entries = max_entries

    def __setitem__(self, key: str, value: str) -> None:
        self.expire()
        if key not in self:
            while len(self) >= self.max_entries:
                self.popitem()  # least recently used
        super().__setitem__(key, value)


class ReplyCache:
    """The engine's ``ResponseCache``; ``timer`` is injectable so tests can move time."""

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        max_bytes: int = 16 * 1024 * 1024,
        ttl: float = 3600.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or ttl <= 0:
            raise ValueError("cache bounds must be positive")
        self._lock = threading.Lock()
        self._cache = _BoundedTTLCache(max_entries=max_entries, max_bytes=max_bytes, ttl=ttl, timer=timer)

    def key(
        self, backend: Backend, messages: Sequence[Message], params: GenerationParams, *, salt: str = ""
    ) -> str:
        """A digest of backend, model, the fitted messages (system prompt included), the
        sampling parameters and the session salt: anything else would serve a wrong reply."""
        payload = {
            "v": KEY_VERSION,
            "backend": backend.name,
            "model": backend.model,
            "messages": [[m.role, m.content] for m in messages],
            "params": dataclasses.asdict(params),
            "salt": salt,
        }
        blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            try:
                self._cache[key] = text
            except ValueError:  # larger than the whole cache: not worth evicting everything
                log.debug("reply of %d bytes not cached: above the cache size", entry_size(text))

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            self._cache.expire()
            return self._cache.currsize


def session_salt(api_key: str | None) -> str:
    """Separate cache entries per session key without ever storing the key itself."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]
