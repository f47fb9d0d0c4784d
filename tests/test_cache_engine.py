"""The cache inside the engine, on the real embedded model built by ``build_engine(Settings())``.

What is stored is decided by the engine (only ``finish_reason == "stop"`` replies that passed the
output guard); these tests check that from the outside. ``ScriptedBackend`` (a fake) is used only
for what the real model cannot produce on demand: a banned phrase, a failure after some text.
"""

from __future__ import annotations

import logging
import threading

import pytest
from guard_fakes import ScriptedBackend, SpyBackend

from chat import ChatEngine, Done, GenerationParams, TextDelta
from chat.engine import CACHE_REPLAY_CHUNK
from chat.engine.cache import ReplyCache
from chat.guards import ContentGuard

QUESTION = [{"role": "user", "content": "Say hello."}]
PARAMS = GenerationParams(temperature=0, max_new_tokens=96)
API_KEY = "sk-session-key-0123456789abcdefghij"


@pytest.fixture
def setup(real_engine: ChatEngine) -> tuple[ChatEngine, SpyBackend, ReplyCache]:
    """The real model behind a call counter, the shipped guards and a fresh cache."""
    cache = ReplyCache()
    spy = SpyBackend(real_engine.backends["local"])
    engine = ChatEngine(
        {"local": spy},
        input_guard=real_engine.input_guard,
        output_guard=real_engine.output_guard,
        cache=cache,
    )
    return engine, spy, cache


def test_a_hit_replays_the_reply_as_a_stream(setup: tuple[ChatEngine, SpyBackend, ReplyCache]) -> None:
    engine, spy, cache = setup
    first = engine.reply(QUESTION, PARAMS)
    assert first.stats.finish_reason == "stop" and not first.stats.from_cache
    events = list(engine.stream(QUESTION, PARAMS))
    done = events[-1]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert isinstance(done, Done) and done.stats.from_cache and done.stats.finish_reason == "stop"
    assert done.text == first.text == "".join(deltas)
    assert len(deltas) == -(-len(first.text) // CACHE_REPLAY_CHUNK) > 1
    assert spy.calls == 1
    assert engine.counters.snapshot() == {"requests": 2, "cache_misses": 1, "cache_hits": 1}


def test_different_inputs_miss(setup: tuple[ChatEngine, SpyBackend, ReplyCache]) -> None:
    engine, spy, _ = setup
    engine.reply(QUESTION, PARAMS)
    engine.reply([{"role": "system", "content": "You are a pirate."}, *QUESTION], PARAMS)
    engine.reply(QUESTION, GenerationParams(temperature=0, max_new_tokens=95))
    assert spy.calls == 3 and engine.counters["cache_hits"] == 0


def test_regenerate_bypasses_the_cache(setup: tuple[ChatEngine, SpyBackend, ReplyCache]) -> None:
    engine, spy, cache = setup
    stored = engine.reply(QUESTION, PARAMS).text
    again = engine.reply(QUESTION, PARAMS, use_cache=False)
    assert not again.stats.from_cache and spy.calls == 2
    assert engine.counters["cache_hits"] == 0 and engine.counters["cache_misses"] == 1
    assert engine.reply(QUESTION, PARAMS).text == stored  # the stored reply is still served
    assert len(cache) == 1


def test_a_truncated_reply_is_not_stored(setup: tuple[ChatEngine, SpyBackend, ReplyCache]) -> None:
    engine, spy, cache = setup
    short = GenerationParams(temperature=0, max_new_tokens=4)
    assert engine.reply(QUESTION, short).stats.finish_reason == "length"
    assert engine.reply(QUESTION, short).stats.from_cache is False
    assert len(cache) == 0 and spy.calls == 2


def test_a_stopped_reply_is_not_stored(setup: tuple[ChatEngine, SpyBackend, ReplyCache]) -> None:
    engine, _, cache = setup
    stream = engine.stream(QUESTION, PARAMS)
    for event in stream:
        if isinstance(event, TextDelta):
            break
    stream.close()  # the Stop button / a closed tab
    cancel = threading.Event()
    for event in engine.stream(QUESTION, PARAMS, cancel=cancel):
        if isinstance(event, TextDelta):
            cancel.set()
        if isinstance(event, Done):
            assert event.stats.finish_reason == "cancelled"
    assert len(cache) == 0
    assert not engine.reply(QUESTION, PARAMS).stats.from_cache


def test_blocked_and_errored_replies_are_not_stored() -> None:
    cache = ReplyCache()
    guard = ContentGuard()
    blocked = ScriptedBackend(["Please send me ", "your password."])
    engine = ChatEngine({"scripted": blocked}, input_guard=guard, output_guard=guard, cache=cache)
    for _ in range(2):
        assert engine.reply(QUESTION, PARAMS).stats.finish_reason == "blocked"
    failing = ScriptedBackend(["Hello ", "there, ", "friend."], fail_after=2)
    engine = ChatEngine({"scripted": failing}, input_guard=guard, output_guard=guard, cache=cache)
    for _ in range(2):
        assert engine.reply(QUESTION, PARAMS).stats.finish_reason == "error"
    assert len(cache) == 0
    assert blocked.calls == 2 and failing.calls == 2
    assert engine.counters["cache_hits"] == 0


def test_a_session_api_key_separates_entries_and_is_never_stored_or_logged(
    setup: tuple[ChatEngine, SpyBackend, ReplyCache], caplog: pytest.LogCaptureFixture
) -> None:
    engine, spy, cache = setup
    caplog.set_level(logging.DEBUG)
    with_key = engine.reply(QUESTION, PARAMS, api_key=API_KEY)
    assert engine.reply(QUESTION, PARAMS, api_key=API_KEY).stats.from_cache
    assert not engine.reply(QUESTION, PARAMS, api_key="sk-another-session-key-000000").stats.from_cache
    assert not engine.reply(QUESTION, PARAMS).stats.from_cache
    assert spy.calls == 3
    stored = [cache._cache[k] for k in list(cache._cache)]  # noqa: SLF001 - inspecting storage
    keys = list(cache._cache)  # noqa: SLF001
    assert with_key.text in stored
    assert not any(API_KEY in s for s in (*stored, *keys, caplog.text))


def test_many_sessions_at_once_share_the_cache(setup: tuple[ChatEngine, SpyBackend, ReplyCache]) -> None:
    engine, spy, cache = setup
    results: list[Done] = []
    errors: list[BaseException] = []

    def session() -> None:
        try:
            results.append(engine.reply(QUESTION, PARAMS))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for _ in range(2):  # first wave: all miss while the model is busy; second wave: all hit
        threads = [threading.Thread(target=session) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors and len(results) == 12
    # The second wave replays the one reply the cache kept. The first wave's replies are generated
    # side by side: batched arithmetic can change a greedy argmax, so they may differ in words.
    assert len({r.text for r in results[6:]}) == 1
    assert results[-1].text in {r.text for r in results[:6]}
    assert all(r.stats.from_cache for r in results[6:])
    counts = engine.counters.snapshot()
    assert counts["cache_hits"] + counts["cache_misses"] == 12 and counts["cache_hits"] >= 6
    assert spy.calls == counts["cache_misses"] and len(cache) == 1


def test_without_a_cache_nothing_is_replayed(real_engine: ChatEngine) -> None:
    engine = ChatEngine(real_engine.backends)
    assert not engine.reply(QUESTION, PARAMS).stats.from_cache
    assert not engine.reply(QUESTION, PARAMS).stats.from_cache
    assert "cache_hits" not in engine.counters.snapshot()
