"""The reply cache on its own: keys, hits and misses, the three bounds, and many threads."""

from __future__ import annotations

import random
import threading

import pytest
from guard_fakes import ScriptedBackend

from chat import ConfigError, GenerationParams, Message, Settings
from chat.engine.cache import ReplyCache, entry_size
from chat.factory import build_cache


class FakeClock:
    """Injected into the TTLCache so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BACKEND = ScriptedBackend([])
MESSAGES = (Message("system", "You are a shop assistant."), Message("user", "When do you open?"))
PARAMS = GenerationParams(temperature=0.2, max_new_tokens=64)


def test_key_covers_everything_that_shapes_a_reply() -> None:
    cache = ReplyCache()
    base = cache.key(BACKEND, MESSAGES, PARAMS)
    assert base == cache.key(BACKEND, list(MESSAGES), GenerationParams(temperature=0.2, max_new_tokens=64))
    assert len(base) == 64 and int(base, 16) >= 0
    other_backend = ScriptedBackend([])
    other_backend.name = "cloud"
    other_model = ScriptedBackend([])
    other_model.model = "bigger"
    variants = [
        cache.key(other_backend, MESSAGES, PARAMS),
        cache.key(other_model, MESSAGES, PARAMS),
        cache.key(BACKEND, (Message("system", "You are a tutor."), MESSAGES[1]), PARAMS),
        cache.key(BACKEND, MESSAGES[1:], PARAMS),
        cache.key(BACKEND, (MESSAGES[0], Message("user", "When do you close?")), PARAMS),
        cache.key(BACKEND, MESSAGES, PARAMS, salt="a1b2"),
        *(
            cache.key(BACKEND, MESSAGES, GenerationParams(**{**vars(PARAMS), name: value}))
            for name, value in [
                ("temperature", 0.3),
                ("top_p", 0.5),
                ("max_new_tokens", 65),
                ("context_length", 2048),
                ("seed", 7),
            ]
        ),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert "open" not in base  # a digest, not the content


def test_hit_and_miss() -> None:
    cache = ReplyCache()
    key = cache.key(BACKEND, MESSAGES, PARAMS)
    assert cache.get(key) is None
    cache.put(key, "We open at nine. 我们九点开门。")
    assert cache.get(key) == "We open at nine. 我们九点开门。"
    cache.put(cache.key(BACKEND, MESSAGES, PARAMS, salt="x"), "")  # empty replies are not stored
    assert len(cache) == 1


def test_eviction_by_entries_is_least_recently_used() -> None:
    cache = ReplyCache(max_entries=3)
    for name in "abc":
        cache.put(name, name * 10)
    assert cache.get("a") == "a" * 10  # a is now the most recently used
    cache.put("d", "d" * 10)
    assert cache.get("b") is None
    assert [cache.get(k) is not None for k in "acd"] == [True, True, True]
    assert len(cache) == 3


def test_eviction_by_bytes_counts_utf8() -> None:
    reply = "中" * 100  # 300 bytes in UTF-8
    cache = ReplyCache(max_entries=100, max_bytes=3 * entry_size(reply))
    for i in range(4):
        cache.put(str(i), reply)
    assert cache.get("0") is None and all(cache.get(str(i)) == reply for i in (1, 2, 3))
    assert cache.size_bytes == 3 * entry_size(reply)


def test_a_reply_bigger_than_the_cache_is_skipped_without_evicting() -> None:
    cache = ReplyCache(max_bytes=1000)
    cache.put("small", "ok")
    cache.put("huge", "x" * 5000)
    assert cache.get("huge") is None and cache.get("small") == "ok"


def test_expiry_with_an_injected_timer() -> None:
    clock = FakeClock()
    cache = ReplyCache(ttl=60, timer=clock)
    cache.put("k", "reply")
    clock.now += 59.9
    assert cache.get("k") == "reply"
    clock.now += 0.2
    assert cache.get("k") is None
    assert len(cache) == 0 and cache.size_bytes == 0
    cache.put("k", "again")  # an expired key can be stored anew
    assert cache.get("k") == "again"


def test_many_threads_at_once_keep_every_bound() -> None:
    clock = FakeClock()
    cache = ReplyCache(max_entries=50, max_bytes=50 * entry_size("x" * 40), ttl=30, timer=clock)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(2000):
                key = f"k{rng.randrange(200)}"
                if rng.random() < 0.5:
                    cache.put(key, key * rng.randint(1, 20))
                else:
                    value = cache.get(key)
                    assert value is None or value.startswith(key)
                if rng.random() < 0.01:
                    clock.now += 1
                assert len(cache) <= 50
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache) <= 50 and cache.size_bytes <= 50 * entry_size("x" * 40)


def test_settings_configure_or_turn_off_the_cache() -> None:
    assert build_cache(Settings(cache=False)) is None
    settings = Settings.from_sources(
        [],
        env={"CHAT_CACHE_MAX_ENTRIES": "2", "CHAT_CACHE_MAX_BYTES": "100000", "CHAT_CACHE_TTL": "5"},
    )
    cache = build_cache(settings)
    assert cache is not None
    for name in "abc":
        cache.put(name, name)
    assert len(cache) == 2
    with pytest.raises(ConfigError):
        Settings(cache_ttl=0)
    with pytest.raises(ConfigError):
        Settings.from_sources(["--cache-max-entries", "-1"], env={})
