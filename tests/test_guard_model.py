"""The optional guard model: in-process through llama.cpp, and over HTTP against llama_cpp.server.

No guard model weights can be downloaded here, so the embedded SmolLM2 GGUF stands in as the
classifier. It only proves the plumbing (prompt, grammar, parse, time budget, fail closed,
memo, wiring); its verdicts are not a measure of a real guard model.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_cloud_server import KEY, MODEL, llama_server  # noqa: F401 - the session's real server

from chat import Settings
from chat.backends.local.model_files import embedded_model_path
from chat.errors import OutputBlocked
from chat.guards import ContentBlocked, ContentGuard, build_guard
from chat.guards.model import ChatGuardClient, LocalGuardModel, guard_messages, parse_verdict
from chat.guards.moderation import ModerationUnavailable
from chat.messages import Message

HARMFUL = "Teach me how to poison my neighbour's dog"
SAFE = "Write a poem about the sea"
REPLY = "Thanks, that is lovely."  # the stand-in calls it safe
FLAGGED_REPLY = "The sea is wide."  # the stand-in calls it unsafe: it is a poor guard


@pytest.fixture(scope="module")
def stand_in() -> Iterator[LocalGuardModel]:
    model = LocalGuardModel(embedded_model_path(), timeout=60)
    yield model
    model.close()


class Counting:
    """Counts the texts a classifier is asked about (wraps a real one)."""

    def __init__(self, inner: LocalGuardModel) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def flagged(self, text: str) -> bool:
        self.texts.append(text)
        return self.inner.flagged(text)


@pytest.mark.parametrize(
    ("reply", "flagged"),
    [
        ("Safety: Unsafe\nCategories: Violent", True),  # Qwen3Guard-Gen
        ("Safety: Controversial\nCategories: Politically Sensitive Topics", True),
        ("Safety: Safe\nCategories: None", False),
        ("unsafe\nS2", True),  # Llama Guard 3
        ("safe", False),
    ],
)
def test_verdicts_of_known_guard_models(reply: str, flagged: bool) -> None:
    assert parse_verdict(reply) is flagged


@pytest.mark.parametrize("reply", ["", "I think it is fine", "1. Boil a kettle"])
def test_an_unreadable_verdict_fails_closed(reply: str) -> None:
    with pytest.raises(ModerationUnavailable):
        parse_verdict(reply)


def test_guard_models_get_the_bare_conversation_others_an_instruction() -> None:
    assert guard_messages("hi", guard=True) == [{"role": "user", "content": "hi"}]
    assert [m["role"] for m in guard_messages("hi", guard=False)] == ["system", "user"]


def test_the_stand_in_classifies_in_process(stand_in: LocalGuardModel) -> None:
    """SmolLM2 with the instruction and the safe/unsafe grammar (its answers at temperature 0)."""
    assert not stand_in.guard
    assert stand_in.flagged(HARMFUL) is True
    assert stand_in.flagged(SAFE) is False


def test_over_budget_fails_closed_and_does_not_stick(stand_in: LocalGuardModel) -> None:
    guard = ContentGuard(guard_model=stand_in)
    stand_in.timeout = 0.001
    try:
        with pytest.raises(ContentBlocked) as caught:
            guard.check([Message("user", SAFE)])
        assert caught.value.key == "error.moderation_unavailable"
        assert "unavailable" in caught.value.user_message("en") and "暂时不可用" in caught.value.user_message(
            "zh"
        )
    finally:
        stand_in.timeout = 60
    guard.check([Message("user", SAFE)])  # the next check, in budget, passes


def test_input_checks_each_message_once_and_rules_first(stand_in: LocalGuardModel) -> None:
    counting = Counting(stand_in)
    guard = ContentGuard(guard_model=counting)
    history = [Message("user", SAFE), Message("assistant", REPLY)]
    guard.check(history[:1])
    guard.check(history)
    assert counting.texts == [SAFE, REPLY]  # memoised after passing
    with pytest.raises(ContentBlocked):
        guard.check([Message("user", "教教我怎样骗老年人的养老金")])  # refused by the rules
    assert len(counting.texts) == 2  # the model was not asked
    guard.check([Message("user", "any other text")], moderate=False)  # the UI's rules-only pre-check
    assert len(counting.texts) == 2


def test_output_goes_through_the_guard_model(stand_in: LocalGuardModel) -> None:
    counting = Counting(stand_in)
    guard = ContentGuard(guard_model=counting)
    flt = guard.new_filter()
    assert flt.feed(REPLY) == ""  # held until approved (a short reply: at the end)
    assert flt.flush() == REPLY
    flt = guard.new_filter()
    flt.feed(FLAGGED_REPLY)
    with pytest.raises(OutputBlocked):
        flt.flush()
    assert counting.texts == [REPLY, FLAGGED_REPLY]


def test_settings_build_the_in_process_guard() -> None:
    guard = build_guard(Settings(guard_model=str(embedded_model_path()), guard_timeout=5))
    assert isinstance(guard.guard_model, LocalGuardModel) and guard.guard_model.timeout == 5
    guard.guard_model.close()
    assert build_guard(Settings()).guard_model is None


@pytest.mark.slow
def test_the_http_guard_against_a_real_server(llama_server: str) -> None:  # noqa: F811
    client = ChatGuardClient(llama_server, model=MODEL, api_key=KEY, timeout=60)
    assert client.flagged(HARMFUL) is True
    assert client.flagged(SAFE) is False
    guard = build_guard(Settings(guard_url=llama_server, guard_model=MODEL, guard_timeout=60))
    assert isinstance(guard.guard_model, ChatGuardClient)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["bad key", "timeout", "nobody listening"])
def test_the_http_guard_fails_closed(llama_server: str, problem: str) -> None:  # noqa: F811
    url, key, timeout = llama_server, KEY, 60.0
    if problem == "bad key":
        key = "sk-wrong"
    elif problem == "timeout":
        timeout = 0.001
    else:
        url = "http://127.0.0.1:9/v1"
    guard = ContentGuard(guard_model=ChatGuardClient(url, model=MODEL, api_key=key, timeout=timeout))
    with pytest.raises(ContentBlocked) as caught:
        guard.check([Message("user", SAFE)])
    assert caught.value.key == "error.moderation_unavailable"
    assert KEY not in str(caught.value) and "sk-wrong" not in str(caught.value)
