"""The response cache in Redis, so a reply one replica made is a hit on every other.

Bounded as the in-process cache is (entries, total bytes, time to live), by one Lua script run
atomically in Redis: an index of entries by the time they were stored, their sizes, and a running
total; the oldest go first. Keys are the engine's SHA-256 digests under ``chat:reply:``, so
nothing a user wrote, and no API key, is a Redis key. While Redis does not answer, the
process's own ``ReplyCache`` serves (``chat.redis_link``).
"""

from __future__ import annotations

from collections.abc import Sequence

from chat.backends.base import Backend
from chat.engine.cache import ReplyCache, entry_size
from chat.messages import GenerationParams, Message
from chat.redis_link import RedisLink

PREFIX = "chat:reply:"
INDEX, SIZES, TOTAL = PREFIX + "index", PREFIX + "sizes", PREFIX + "bytes"

# Drop entries past their time (their values Redis has already expired), then, for a put, make
# room by dropping the oldest and store the new one, indexed by the microsecond it was stored
# (Redis's clock, one for every replica). KEYS: index, sizes, total.
# ARGV: ttl_ms, and for a put: digest, value, size, max_entries, max_bytes.
_SCRIPT = """
local prefix = 'chat:reply:'
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local ttl = tonumber(ARGV[1])
local function drop(digest)
  local size = tonumber(redis.call('HGET', KEYS[2], digest) or '0')
  redis.call('HDEL', KEYS[2], digest)
  redis.call('ZREM', KEYS[1], digest)
  redis.call('DEL', prefix .. digest)
  redis.call('DECRBY', KEYS[3], size)
end
for _, digest in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl * 1000)) do drop(digest) end
if #ARGV == 1 then return redis.call('ZCARD', KEYS[1]) end
local digest, size = ARGV[2], tonumber(ARGV[4])
local max_entries, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('HEXISTS', KEYS[2], digest) == 1 then drop(digest) end
while redis.call('ZCARD', KEYS[1]) > 0 and (redis.call('ZCARD', KEYS[1]) >= max_entries
    or tonumber(redis.call('GET', KEYS[3]) or '0') + size > max_bytes) do
  drop(redis.call('ZRANGE', KEYS[1], 0, 0)[1])
end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
if newest and tonumber(newest) >= now then now = tonumber(newest) + 1 end  -- stored order, always
redis.call('SET', prefix .. digest, ARGV[3], 'PX', ttl)
redis.call('ZADD', KEYS[1], now, digest)
redis.call('HSET', KEYS[2], digest, size)
redis.call('INCRBY', KEYS[3], size)
return redis.call('ZCARD', KEYS[1])
"""


class SharedReplyCache:
    """The engine's ``ResponseCache`` in Redis, with ``local`` as the fallback."""

    def __init__(self, link: RedisLink, local: ReplyCache, *, max_entries: int, max_bytes: int, ttl: float):
        self.link = link
        self.local = local
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.ttl_ms = max(1, int(ttl * 1000))
        self._script = link.client.register_script(_SCRIPT)

    def key(
        self, backend: Backend, messages: Sequence[Message], params: GenerationParams, *, salt: str = ""
    ) -> str:
        return self.local.key(backend, messages, params, salt=salt)

    def get(self, key: str) -> str | None:
        if self.link.available():
            try:
                value = self.link.client.get(PREFIX + key)
            except self.link.errors as exc:
                self.link.failed(exc)
            else:
                self.link.succeeded()
                return None if value is None else value.decode("utf-8")
        return self.local.get(key)

    def put(self, key: str, text: str) -> None:
        size = entry_size(text)
        if not text or size > self.max_bytes:
            return
        if self.link.available():
            try:
                self._run(key, text.encode("utf-8"), size)
            except self.link.errors as exc:
                self.link.failed(exc)
            else:
                self.link.succeeded()
                return
        self.local.put(key, text)

    def _run(self, *argv: object) -> int:
        args = [self.ttl_ms, *argv, self.max_entries, self.max_bytes] if argv else [self.ttl_ms]
        return int(self._script(keys=[INDEX, SIZES, TOTAL], args=args))

    def clear(self) -> None:
        self.local.clear()
        try:
            digests = self.link.client.zrange(INDEX, 0, -1)
            self.link.client.delete(INDEX, SIZES, TOTAL, *(PREFIX + d.decode() for d in digests))
        except self.link.errors as exc:
            self.link.failed(exc)

    def __len__(self) -> int:
        if self.link.available():
            try:
                return self._run()
            except self.link.errors as exc:
                self.link.failed(exc)
        return len(self.local)

    @property
    def size_bytes(self) -> int:
        if self.link.available():
            try:
                return int(self.link.client.get(TOTAL) or 0)
            except self.link.errors as exc:
                self.link.failed(exc)
        return self.local.size_bytes
