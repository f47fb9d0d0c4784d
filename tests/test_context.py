"""Fitting conversations into the context window, counted with the model's own tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from guard_fakes import SpyBackend

from chat import ChatEngine, ContextOverflow, GenerationParams, InvalidRequest, Message, Notice, Settings
from chat.backends.local.backend import LlamaCppBackend
from chat.engine.window import MIN_REPLY_TOKENS, fit_messages
from chat.factory import build_local_backend


def long_history(turns: int) -> list[Message]:
    messages = [Message("system", "You are a concise assistant.")]
    for i in range(turns):
        messages.append(Message("user", f"Question {i}: tell me about the number {i} in detail."))
        messages.append(Message("assistant", f"The number {i} is interesting for many reasons. " * 4))
    messages.append(Message("user", "Newest question: what is 2 + 2?"))
    return messages


def test_count_matches_llama_cpp_prompt(local_backend) -> None:
    """The count is the real prompt: the same number llama.cpp evaluates."""
    messages = [Message("system", "Be brief."), Message("user", "Hello there, 你好!")]
    counted = local_backend.count_tokens(messages)
    # Generate one token and read the exact prompt size llama.cpp reports.
    result = local_backend._llm.create_chat_completion([m.to_dict() for m in messages], max_tokens=1)
    assert counted == result["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    "texts",
    [
        ["Hello there", "General Kenobi!  ", "  spaces, tabs\tand\nnewlines\n\n"],
        ["你好，请介绍一下长城。", "长城是中国古代的军事防御工程。", "谢谢！还有呢？"],
        ["code: `print('<b>')` {x: 1}", "", "emoji 🙂 and a literal <|im_end|> typed by a user"],
    ],
)
def test_prompt_tokens_built_piecewise_match_llama_cpp(local_backend, texts: list[str]) -> None:
    """The memoised piece-by-piece tokens are exactly the tokens of the whole rendered prompt."""
    assert local_backend._tokenizer.piecewise  # SmolLM2's tokenizer allows it (checked at load)
    roles = ["user", "assistant", "user"]
    messages = [Message("system", "Be brief."), *(Message(r, c) for r, c in zip(roles, texts, strict=True))]
    rendered = local_backend._formatter(messages=[m.to_dict() for m in messages])
    whole = local_backend._llm.tokenize(
        rendered.prompt.encode(), add_bos=not rendered.added_special, special=True
    )
    assert local_backend._prompt(messages).tokens == whole


def test_over_long_history_is_trimmed_oldest_first(local_backend) -> None:
    messages = long_history(40)
    assert local_backend.count_tokens(messages) > 1024
    fitted = fit_messages(
        messages,
        window=1024,
        max_new_tokens=128,
        count=local_backend.count_tokens,
        cost=local_backend.message_tokens,
    )
    assert fitted.prompt_tokens <= 1024 - 128
    assert fitted.prompt_tokens == local_backend.count_tokens(fitted.messages)
    assert fitted.messages[0] == messages[0]  # system prompt kept
    assert fitted.messages[-1] == messages[-1]  # newest message kept
    assert fitted.messages[1].role == "user"  # whole turns dropped, roles still alternate
    assert fitted.dropped > 0 and fitted.dropped % 2 == 0
    kept = list(fitted.messages[1:])
    assert kept == messages[len(messages) - len(kept) :]  # the most recent turns survive
    # As many turns as possible: one more turn would not fit.
    one_more = (messages[0], *messages[fitted.dropped - 1 :])
    assert local_backend.count_tokens(one_more) > 1024 - 128


@pytest.fixture
def scripted(local_backend: LlamaCppBackend) -> ChatEngine:
    """For tests about the prompt the engine fits, not what the model says: a scripted reply,
    counted with the real tokenizer (no prompt is evaluated)."""
    return ChatEngine({"local": SpyBackend(local_backend, reply=["Four."])})


def test_engine_trims_and_tells_the_user(scripted: ChatEngine) -> None:
    events = list(scripted.stream(long_history(40), GenerationParams(max_new_tokens=8, context_length=384)))
    notices = [e for e in events if isinstance(e, Notice) and e.kind == "trimmed"]
    assert len(notices) == 1
    assert "earlier message" in notices[0].text
    done = events[-1]
    assert done.stats.dropped_messages > 0
    assert done.stats.prompt_tokens <= 384 - 8


def test_trim_notice_in_chinese(scripted: ChatEngine) -> None:
    history = long_history(40)
    history[-1] = Message("user", "最新的问题：二加二等于几？")
    notices = [
        e
        for e in scripted.stream(history, GenerationParams(max_new_tokens=8, context_length=256))
        if isinstance(e, Notice)
    ]
    assert "省略了较早的" in notices[0].text


def test_short_history_is_untouched(engine: ChatEngine) -> None:
    events = list(engine.stream(long_history(1), GenerationParams(max_new_tokens=8, context_length=2048)))
    assert not [e for e in events if isinstance(e, Notice) and e.kind == "trimmed"]
    assert events[-1].stats.dropped_messages == 0


def test_single_message_too_long_gets_clear_error(engine: ChatEngine, local_backend) -> None:
    huge = [{"role": "user", "content": "lorem ipsum dolor " * 400}]
    with pytest.raises(ContextOverflow) as info:
        engine.reply(huge, GenerationParams(max_new_tokens=64, context_length=1024))
    err = info.value
    assert err.fields["needed"] > err.fields["available"] == 1024 - MIN_REPLY_TOKENS
    assert "too long" in err.user_message("en")
    assert "太长" in err.user_message("zh")
    assert local_backend.queue_depth == 0


@pytest.fixture(scope="module")
def small_window_backend(data_dir: str) -> Iterator[LlamaCppBackend]:
    """The same model loaded with a 512-token window (0.5 s to load): filling it costs a quarter of
    what filling the session model's 2,048 would."""
    backend = build_local_backend(Settings(n_ctx=512, reproducible=True, data_dir=data_dir))
    yield backend
    backend.close()


def test_slider_above_loaded_window_is_capped_with_notice(small_window_backend: LlamaCppBackend) -> None:
    window = small_window_backend.context_window()
    assert window == 512
    engine = ChatEngine({"local": small_window_backend})
    events = list(
        engine.stream(long_history(60), GenerationParams(max_new_tokens=16, context_length=window * 4))
    )
    capped = [e for e in events if isinstance(e, Notice) and e.kind == "context_capped"]
    assert capped and str(window) in capped[0].text
    assert events[-1].stats.prompt_tokens <= window - 16  # n_ctx never exceeded


def test_reply_budget_larger_than_window_shrinks_with_a_notice(engine: ChatEngine) -> None:
    events = list(
        engine.stream(
            [{"role": "user", "content": "Say hi."}],
            GenerationParams(max_new_tokens=2048, context_length=2048, temperature=0),
        )
    )
    budget = [e for e in events if isinstance(e, Notice) and e.kind == "reply_budget"]
    assert len(budget) == 1 and "2048" in budget[0].text
    assert events[-1].text.strip()


def test_long_history_in_a_small_window_keeps_half_for_history(local_backend) -> None:
    """max new tokens = the whole window: the reply gets at most half, history the rest."""
    fitted = fit_messages(long_history(40), window=512, max_new_tokens=512, count=local_backend.count_tokens)
    assert fitted.reply_tokens == 256
    assert fitted.dropped > 0 and fitted.prompt_tokens <= 256


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("temperature", -0.1, "between 0 and 2"),
        ("temperature", "hot", "must be a number"),
        ("top_p", 1.5, "between 0 and 1"),
        ("max_new_tokens", 0, "between 1 and 8192"),
        ("max_new_tokens", 3.5, "whole number"),
        ("context_length", 10, "between 64"),
        ("context_length", float("nan"), "between 64"),
        ("temperature", True, "must be a number"),
    ],
)
def test_generation_params_are_validated(field: str, value, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        GenerationParams(**{field: value})
    assert fragment in str(info.value)
    assert field in str(info.value)


def test_every_way_in_starts_from_the_same_defaults_capped_at_the_loaded_window() -> None:
    """The page, its Gradio API, REST and /ws all start from ``GenerationParams.within``."""
    assert GenerationParams.within(10**6) == GenerationParams()
    assert GenerationParams.within(2048) == replace(GenerationParams(), context_length=2048)
