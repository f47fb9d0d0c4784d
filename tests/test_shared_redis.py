"""Replicas that share one real Redis (Debian's redis-server on a free port, issue 32): the rate
limit counted once across replicas, the response cache bounded and shared, and Redis stopped
mid-test: the log and /readyz say so, limits and cache fall back to the process, answers go on.

Two ``ClientLimiter`` or ``SharedReplyCache`` objects stand for two replicas: all they share is
the Redis server, as two processes would (tests/test_replicas_shared.py runs real processes)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from redis_server import RedisServer, redis_server
from service_support import serve, service_engine

from chat.engine.cache import ReplyCache
from chat.engine.shared_cache import INDEX, PREFIX, SharedReplyCache
from chat.messages import GenerationParams, Message
from chat.redis_link import RedisLink, safe_redis_url, shared_link
from chat.service.door.ratelimit import ClientLimiter


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def fresh(redis: RedisServer) -> RedisServer:
    """The module's Redis, emptied and answering, its link told it is up."""
    if redis._process is None:
        redis.start()
    link = shared_link(redis.url)
    link.client.flushdb()
    link.ping()
    return redis


MODEL = SimpleNamespace(name="local", model="test-model")  # all a cache key reads of a backend


def cache_pair(link: RedisLink, **bounds: float) -> tuple[SharedReplyCache, SharedReplyCache]:
    settings = {"max_entries": 3, "max_bytes": 10_000, "ttl": 60.0, **bounds}
    return tuple(SharedReplyCache(link, ReplyCache(), **settings) for _ in range(2))  # type: ignore[return-value]


def test_the_rate_limit_counts_once_across_replicas(fresh: RedisServer) -> None:
    """12 messages alternating between two replicas against a limit of 8: 8 pass, not 12."""
    one, two = ClientLimiter(8, redis_url=fresh.url), ClientLimiter(8, redis_url=fresh.url)
    waits = [(one if i % 2 else two).hit("203.0.113.7") for i in range(12)]
    assert waits[:8] == [None] * 8
    assert all(isinstance(w, int) and 1 <= w <= 60 for w in waits[8:])
    assert one.wait("203.0.113.7") is not None and two.wait("198.51.100.1") is None
    # Redis holds a digest of the client, never its address.
    keys = [k.decode() for k in shared_link(fresh.url).client.keys("*")]
    assert keys and not any("203.0.113.7" in k for k in keys)


def test_replies_are_shared_bounded_and_expire(fresh: RedisServer) -> None:
    link = shared_link(fresh.url)
    one, two = cache_pair(link)
    keys = [
        one.key(MODEL, [Message("user", f"question {i}")], GenerationParams(temperature=0)) for i in range(5)
    ]
    for i, key in enumerate(keys):
        one.put(key, f"答案 {i}")
    assert two.get(keys[4]) == "答案 4"  # made on one replica, a hit on the other
    assert len(two) == 3 and two.get(keys[0]) is None and two.get(keys[1]) is None  # oldest first
    # Keys are digests: no user text, no session key, in Redis.
    stored = {k.decode() for k in link.client.keys("chat:reply:*")}
    assert stored - {INDEX, PREFIX + "sizes", PREFIX + "bytes"} == {PREFIX + k for k in keys[2:]}
    assert all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keys)
    assert two.size_bytes == sum(len(f"答案 {i}".encode()) + 164 for i in (2, 3, 4))

    small, _ = cache_pair(link, max_entries=100, max_bytes=600)
    small.clear()
    for key in keys:
        small.put(key, "x" * 200)  # 364 bytes each with the overhead: one fits in 600
    assert len(small) == 1 and small.size_bytes <= 600

    short, other = cache_pair(link, ttl=0.3)
    short.put(keys[0], "soon gone")
    assert other.get(keys[0]) == "soon gone"
    time.sleep(0.4)
    assert other.get(keys[0]) is None and len(other) == 0


def test_redis_down_falls_back_to_the_process_and_comes_back(
    fresh: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    link = shared_link(fresh.url)
    link.retry_seconds = 0.2
    limiter = ClientLimiter(3, redis_url=fresh.url)
    cache, _ = cache_pair(link)
    key = cache.key(MODEL, [Message("user", "hi")], GenerationParams(temperature=0))
    assert [limiter.hit("a") for _ in range(2)] == [None, None]  # 2 of 3 counted in Redis

    caplog.set_level(logging.WARNING, logger="chat.redis_link")
    fresh.stop()
    started = time.monotonic()
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]  # a fresh window here
    assert limiter.hit("a") is not None  # the process's own limit still holds
    cache.put(key, "kept here meanwhile")
    assert cache.get(key) == "kept here meanwhile"
    assert time.monotonic() - started < 1.0  # no request waits on the dead socket for long
    assert link.status() == {
        "url": safe_redis_url(fresh.url),
        "reachable": False,
        "reason": "unreachable (ConnectionError)",
        "limits_and_cache": "this process only",
    }
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "does not answer" in errors[0].getMessage()  # once per outage

    fresh.start()
    time.sleep(0.25)
    assert link.status()["reachable"] is True
    # Counted in Redis again (a restarted Redis, --save '': its windows start empty), once for
    # both replicas: 3 between them, then 429.
    other = ClientLimiter(3, redis_url=fresh.url)
    assert [(limiter, other)[i % 2].hit("b") is None for i in range(4)] == [True, True, True, False]
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_readyz_says_redis_is_down_and_chat_still_answers(fresh: RedisServer, local_backend) -> None:  # noqa: ANN001
    shared_link(fresh.url).retry_seconds = 0.2
    with serve(service_engine(local_backend), full=False, redis_url=fresh.url, rate_limit=5) as base:
        ready = httpx.get(base + "readyz").json()
        assert ready["redis"]["reachable"] is True
        fresh.stop()
        response = httpx.get(base + "readyz")
        assert response.status_code == 200  # still serving: a replica is not pulled for Redis
        assert response.json()["status"] == "degraded"
        assert response.json()["redis"]["limits_and_cache"] == "this process only"
        answer = httpx.post(
            base + "api/chat", json={"user_input": "Say hi.", "context": {"max_new_tokens": 4}}, timeout=60
        )
        assert answer.status_code == 200 and answer.json()["reply"]
        assert "password" not in response.text


def test_the_redis_url_never_shows_its_password() -> None:
    assert safe_redis_url("redis://:s3cret@cache.internal:6380/2") == "redis://cache.internal:6380/2"
    assert safe_redis_url("rediss://user:pw@h/0") == "rediss://h/0"
