"""The per-conversation prompt cache, on the real model: a returning conversation evaluates
only its new tokens, even after other conversations used the model in between.

The figures asserted are token counts, never wall time: ``evaluated`` is checked against
llama.cpp's own counter of prompt tokens it decoded (``llama_perf_context().n_p_eval``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp
import pytest

from chat import ChatEngine, GenerationParams, Message, Notice
from chat.backends.local.backend import LlamaCppBackend
from chat.engine.window import fit_messages

REPLY_TOKENS = 12
# Template joins between the previous reply and the new message (<|im_end|>, newlines, the
# assistant header).
JOIN_SLACK = 12


def new_tokens(backend: LlamaCppBackend, messages: list[Message]) -> int:
    """The most a returning turn should evaluate: its new message and, because a sampled reply
    can re-tokenize differently from the tokens it was sampled as, the previous reply."""
    return backend.message_tokens(messages[-2]) + backend.message_tokens(messages[-3]) + JOIN_SLACK


@pytest.fixture
def backend(local_backend: LlamaCppBackend) -> Iterator[LlamaCppBackend]:
    """The shared model with an empty prompt cache and KV cache; settings restored afterwards."""
    cache = local_backend.prompt_cache
    saved = (cache.max_bytes, local_backend.reproducible)
    cache.clear()
    local_backend.reset()
    local_backend.reproducible = False
    yield local_backend
    cache.max_bytes, local_backend.reproducible = saved
    cache.clear()


@contextmanager
def prompt_evals(backend: LlamaCppBackend) -> Iterator[list[int]]:
    """Collects how many prompt tokens llama.cpp itself decoded inside the block."""
    out: list[int] = []
    llama_cpp.llama_perf_context_reset(backend.context)
    yield out
    out.append(llama_cpp.llama_perf_context(backend.context).n_p_eval)


def conversation(tag: str) -> list[Message]:
    return [Message("system", f"You are assistant {tag}. Answer in one short sentence.")]


def take_turn(engine: ChatEngine, backend: LlamaCppBackend, messages: list[Message], text: str, temp: float):
    messages.append(Message("user", text))
    with prompt_evals(backend) as decoded:
        done = engine.reply(messages, GenerationParams(max_new_tokens=REPLY_TOKENS, temperature=temp))
    messages.append(Message("assistant", done.text))
    return done.stats, decoded[0]


@pytest.mark.parametrize("temperature", [0.7, 0.0])
def test_interleaved_conversations_evaluate_only_new_tokens(backend, temperature: float) -> None:
    """More users than slots take turns: after its first turn, each conversation comes back from
    its own slot or, when others took the slot meanwhile, from the prompt cache."""
    engine = ChatEngine({"local": backend})
    count = backend.parallel + 2
    convs = {f"c{i}-{count}-{temperature}": None for i in range(count)}
    histories = {tag: conversation(tag) for tag in convs}
    previous: dict[str, int] = {}
    for turn in range(3):
        for tag, messages in histories.items():
            stats, decoded = take_turn(
                engine, backend, messages, f"Turn {turn} of {tag}: name a colour.", temperature
            )
            assert stats.evaluated_prompt_tokens == decoded  # our figure is llama.cpp's own count
            assert stats.cached_prompt_tokens + stats.evaluated_prompt_tokens == stats.prompt_tokens
            if turn:
                # The whole previous prompt (and most of its reply) came back from the cache:
                assert stats.cached_prompt_tokens >= previous[tag]
                assert stats.evaluated_prompt_tokens <= new_tokens(backend, messages)
            previous[tag] = stats.prompt_tokens
    assert len(backend.prompt_cache) >= count - backend.parallel  # the others wait in the cache


def test_eviction_under_a_small_limit_still_answers(backend) -> None:
    """A slot's state is saved when another conversation takes the slot (least recently used
    first), and the cache drops its least recently used entry when it is full."""
    engine = ChatEngine({"local": backend})
    convs = [conversation(f"evict-{i}") for i in range(backend.parallel + 1)]
    first = "Name a fruit, and tell me which colour it has when it is ripe."
    for messages in convs:  # the last one takes conversation 0's slot: 0 is saved
        take_turn(engine, backend, messages, first, 0.7)
    one_entry = backend.prompt_cache.bytes
    assert one_entry > 0 and len(backend.prompt_cache) == 1
    backend.prompt_cache.max_bytes = int(one_entry * 1.5)  # room for one saved conversation
    take_turn(engine, backend, conversation("evict-extra"), first, 0.7)  # saves 1: 0 is evicted
    assert backend.prompt_cache.evictions >= 1
    assert backend.prompt_cache.bytes <= backend.prompt_cache.max_bytes
    stats, decoded = take_turn(engine, backend, convs[0], "Name another fruit.", 0.7)
    # 0's state is gone: only the shared system-prompt prefix (if that) is reused...
    assert stats.evaluated_prompt_tokens == decoded > new_tokens(backend, convs[0])
    # ...and the reply is still a real one.
    assert stats.finish_reason in ("stop", "length") and stats.completion_tokens > 0
    # 0's turn took 2's slot, saving 2 and evicting 1: the most recently used is the one kept.
    stats, _ = take_turn(engine, backend, convs[2], "Name another fruit.", 0.7)
    assert stats.evaluated_prompt_tokens <= new_tokens(backend, convs[2])
    stats, _ = take_turn(engine, backend, convs[1], "Name another fruit.", 0.7)
    assert stats.evaluated_prompt_tokens > new_tokens(backend, convs[1])


def test_edit_in_the_middle_evaluates_from_the_first_changed_token(backend) -> None:
    engine = ChatEngine({"local": backend})
    messages = conversation("edit")
    for turn in range(4):
        take_turn(engine, backend, messages, f"Question {turn}: name an animal.", 0.7)
    other = conversation("edit-other")
    take_turn(engine, backend, other, "Name a city.", 0.7)  # the edited conversation is not live
    edited = [*messages[:3], Message("user", "Question 1, edited: name a mountain.")]
    kept_prefix = backend.count_tokens(messages[:3])  # system, user 0, assistant 0
    with prompt_evals(backend) as decoded:
        done = engine.reply(edited, GenerationParams(max_new_tokens=REPLY_TOKENS, temperature=0.7))
    stats = done.stats
    assert stats.evaluated_prompt_tokens == decoded[0]
    # Everything before the edit came from the cache (up to the words the edit kept: "Question
    # 1"), nothing after it did.
    assert abs(stats.cached_prompt_tokens - kept_prefix) <= JOIN_SLACK
    assert stats.cached_prompt_tokens < backend.count_tokens(messages[:4])


def test_retry_reuses_the_prompt(backend) -> None:
    engine = ChatEngine({"local": backend})
    messages = conversation("retry")
    take_turn(engine, backend, messages, "Name a planet.", 0.7)
    take_turn(engine, backend, messages, "Name another planet.", 0.7)
    retry = messages[:-1]  # the same prompt again, without its reply
    done = engine.reply(retry, GenerationParams(max_new_tokens=REPLY_TOKENS, temperature=0.7))
    assert done.stats.evaluated_prompt_tokens == 1  # llama.cpp re-decodes the last token only
    assert done.stats.cached_prompt_tokens == done.stats.prompt_tokens - 1


def test_reproducible_greedy_is_opt_in_and_holds(backend) -> None:
    engine = ChatEngine({"local": backend})
    backend.reproducible = True
    first = conversation("repro")
    take_turn(engine, backend, first, "Tell me about the sea.", 0.0)
    take_turn(engine, backend, first, "And about rivers?", 0.0)
    take_turn(engine, backend, conversation("repro-other"), "Name a tree.", 0.0)
    again = first[:-1]
    with prompt_evals(backend) as decoded:
        done = engine.reply(again, GenerationParams(max_new_tokens=REPLY_TOKENS, temperature=0.0))
    assert done.text == first[-1].content  # identical from an empty cache
    assert done.stats.cached_prompt_tokens == 0
    assert decoded[0] == done.stats.prompt_tokens  # the cost: the whole prompt, every turn


def test_two_users_at_once_get_their_own_replies(backend) -> None:
    """Greedy + reproducible replies alone are the reference; run together, each gets its own."""
    engine = ChatEngine({"local": backend})
    backend.reproducible = True
    prompts = {
        "fruit": [*conversation("u1"), Message("user", "List three fruits.")],
        "tools": [*conversation("u2"), Message("user", "List three tools a carpenter uses.")],
    }
    params = GenerationParams(max_new_tokens=REPLY_TOKENS, temperature=0.0)
    alone = {k: engine.reply(m, params).text for k, m in prompts.items()}
    assert alone["fruit"] != alone["tools"]
    together: dict[str, str] = {}

    def run(key: str) -> None:
        together[key] = engine.reply(prompts[key], params).text

    threads = [threading.Thread(target=run, args=(k,)) for k in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert together == alone


def test_small_context_shrinks_the_reply_instead_of_refusing(backend) -> None:
    engine = ChatEngine({"local": backend})
    events = list(
        engine.stream(
            [Message("user", "Say hello in one word.")],
            GenerationParams(context_length=512, max_new_tokens=512, temperature=0.0),
        )
    )
    notices = [e for e in events if isinstance(e, Notice) and e.kind == "reply_budget"]
    assert notices and "512" in notices[0].text
    done = events[-1]
    assert done.text.strip()
    assert done.stats.prompt_tokens + done.stats.completion_tokens <= 512


def test_fitting_work_does_not_grow_with_the_conversation(backend) -> None:
    """At turn 50, fitting renders the whole prompt at most three times, and counts each
    message once across turns (the render memo serves generation the same prompt)."""
    messages = conversation("work")
    for i in range(50):
        messages += [
            Message("user", f"Question {i} about topic {i}?"),
            Message("assistant", f"Answer {i}. " * 6),
        ]
    messages.append(Message("user", "Last question?"))
    renders: list[int] = []
    real = backend._render

    def counting(dicts):
        renders.append(len(dicts))
        return real(dicts)

    backend._render = counting
    try:
        fit_messages(
            messages, window=1024, max_new_tokens=64, count=backend.count_tokens, cost=backend.message_tokens
        )
        first = len([n for n in renders if n > 2])
        renders.clear()
        grown = [*messages, Message("assistant", "Fine."), Message("user", "One more?")]
        fitted = fit_messages(
            grown, window=1024, max_new_tokens=64, count=backend.count_tokens, cost=backend.message_tokens
        )
    finally:
        del backend._render
    whole = [n for n in renders if n > 2]  # renders of a whole prompt (probes have 1 or 2)
    assert first <= 3 and len(whole) <= 3
    # Small renders: the system prompt with the newest message, and one probe per message not
    # seen before (the two new ones and the previous newest, now history). Not one per turn.
    assert len(renders) - len(whole) <= 4
    assert backend.count_tokens(fitted.messages) == fitted.prompt_tokens <= 1024 - 64
