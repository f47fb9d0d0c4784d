"""The engine on the real embedded model: streaming, controls reaching the model, Python API."""

from __future__ import annotations

import threading

import pytest

from chat import ChatEngine, Done, GenerationParams, InvalidRequest, Message, TextDelta

QUESTION = [{"role": "user", "content": "Write three sentences about the sea."}]


def test_reply_streams_in_several_chunks(engine: ChatEngine) -> None:
    events = list(engine.stream(QUESTION, GenerationParams(max_new_tokens=48, temperature=0.7)))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, Done)
    assert len(deltas) >= 5
    assert "".join(d.text for d in deltas) == done.text
    assert done.text.strip()


def test_stats_describe_the_reply(engine: ChatEngine) -> None:
    done = engine.reply(QUESTION, GenerationParams(max_new_tokens=32))
    stats = done.stats
    assert stats.backend == "local"
    assert stats.model.startswith("SmolLM2-135M-Instruct")
    assert 0 < stats.completion_tokens <= 33
    assert stats.prompt_tokens > 5
    assert stats.time_to_first_token is not None and 0 < stats.time_to_first_token <= stats.total_time
    assert stats.tokens_per_second and stats.tokens_per_second > 0


def test_temperature_zero_is_reproducible_when_asked(engine: ChatEngine, local_backend) -> None:
    """``--reproducible``: greedy replies evaluate from an empty cache, so they repeat exactly.
    (Without it a returning prompt is restored from the prompt cache, which is much faster, but
    its last token decodes in a different batch, which can change an argmax.)"""
    params = GenerationParams(temperature=0, max_new_tokens=40)
    assert local_backend.reproducible  # as tests/conftest.py loads it
    first = engine.reply(QUESTION, params).text
    engine.reply([{"role": "user", "content": "Something else entirely: name a fruit."}], params)
    second = engine.reply(QUESTION, params).text
    assert first == second


def test_high_temperature_varies(engine: ChatEngine) -> None:
    """Guards the test above: the sampler really uses the temperature it is given."""
    params = GenerationParams(temperature=1.5, top_p=1.0, max_new_tokens=24)
    replies = {engine.reply(QUESTION, params).text for _ in range(4)}
    assert len(replies) > 1


def test_max_new_tokens_caps_the_reply(engine: ChatEngine, local_backend) -> None:
    done = engine.reply(QUESTION, GenerationParams(max_new_tokens=8, temperature=0.7))
    assert done.stats.finish_reason == "length"
    assert len(local_backend.tokenize(done.text)) <= 9
    longer = engine.reply(QUESTION, GenerationParams(max_new_tokens=40, temperature=0.7))
    assert len(longer.text) > len(done.text)


def test_length_notice_is_produced(engine: ChatEngine) -> None:
    kinds = [getattr(e, "kind", None) for e in engine.stream(QUESTION, GenerationParams(max_new_tokens=4))]
    assert "length" in kinds


def test_chinese_conversation(engine: ChatEngine) -> None:
    done = engine.reply(
        [{"role": "system", "content": "你是一个乐于助人的助手。"}, {"role": "user", "content": "你好！"}],
        GenerationParams(max_new_tokens=24),
    )
    assert done.text.strip()
    assert done.stats.completion_tokens > 0


def test_cancel_event_stops_generation(engine: ChatEngine, local_backend) -> None:
    cancel = threading.Event()
    stream = engine.stream(QUESTION, GenerationParams(max_new_tokens=400), cancel=cancel)
    seen = 0
    for event in stream:
        if isinstance(event, TextDelta):
            seen += 1
            if seen == 3:
                cancel.set()
        if isinstance(event, Done):
            done = event
    assert done.stats.finish_reason == "cancelled"
    assert done.stats.completion_tokens <= 5
    assert local_backend.queue_depth == 0


def test_closing_the_stream_frees_the_model(engine: ChatEngine, local_backend) -> None:
    stream = engine.stream(QUESTION, GenerationParams(max_new_tokens=400))
    for event in stream:
        if isinstance(event, TextDelta):
            break
    assert local_backend.queue_depth == 1
    stream.close()
    assert local_backend.queue_depth == 0
    assert engine.reply(QUESTION, GenerationParams(max_new_tokens=4)).text


def test_message_objects_and_dicts_are_equivalent(engine: ChatEngine) -> None:
    params = GenerationParams(temperature=0, max_new_tokens=12)
    as_dicts = engine.reply(QUESTION, params).text
    as_messages = engine.reply([Message("user", QUESTION[0]["content"])], params).text
    assert as_dicts == as_messages


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "last message must come from the user"),
        ([{"role": "assistant", "content": "hi"}], "last message must come from the user"),
        ([{"role": "user", "content": "   "}], "Please type a message"),
        ([{"role": "wizard", "content": "hi"}], "role must be one of"),
        ([{"role": "user", "content": 42}], "content must be text"),
        ("hello", "messages must be a list"),
    ],
)
def test_bad_messages_get_clear_errors(engine: ChatEngine, messages, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.reply(messages)
    assert fragment in info.value.user_message("en")
