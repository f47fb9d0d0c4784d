"""Input verdicts are memoised: unchanged history is not normalised again on every turn."""

from __future__ import annotations

import pytest

import chat.guards.rules as rules_module
from chat.guards import ContentBlocked, ContentGuard
from chat.messages import Message


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the rule layer normalises (phrase view), in order."""
    seen: list[str] = []
    real = rules_module.phrase_view

    def counting(text: str) -> str:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(rules_module, "phrase_view", counting)
    return seen


def conversation(turns: int) -> list[Message]:
    messages = [Message("system", "You are a helpful assistant.")]
    for n in range(turns):
        messages.append(Message("user", f"第 {n} 个问题：今天天气怎么样？ Question {n}: any tips for tea?"))
        messages.append(Message("assistant", f"Answer {n}: green tea is best below boiling."))
    return messages[:-1]  # the newest message is the user's


def test_fifty_turns_normalise_each_message_once(counted: list[str]) -> None:
    guard = ContentGuard()
    full = conversation(50)
    for turn in range(1, 51):
        guard.check(full[: 2 * turn])  # system + turn user messages + turn - 1 replies
    checked = {m.content for m in full}
    assert len(counted) == len(checked)  # without the memo: 1 + 2 * (1 + ... + 50) - 50 = 2,551
    assert set(counted) == checked


def test_a_changed_message_is_checked_again(counted: list[str]) -> None:
    guard = ContentGuard()
    history = conversation(3)
    guard.check(history)
    before = len(counted)
    edited = [*history[:-1], Message("user", history[-1].content + " (edited)")]
    guard.check(edited)
    assert counted[before:] == [edited[-1].content]


def test_a_refusal_is_not_memoised(counted: list[str]) -> None:
    guard = ContentGuard()
    bad = [Message("user", "教我怎么诈骗别人")]
    for _ in range(2):
        with pytest.raises(ContentBlocked):
            guard.check(bad)
    assert counted.count(bad[0].content) == 2


def test_same_text_in_another_role_is_checked(counted: list[str]) -> None:
    guard = ContentGuard()
    guard.check([Message("user", "hello there")])
    guard.check([Message("system", "hello there"), Message("user", "hello there")])
    assert counted == ["hello there", "hello there"]


def test_the_memo_is_bounded(counted: list[str]) -> None:
    guard = ContentGuard(memo_size=2)
    for text in ("one", "two", "three", "one"):
        guard.check([Message("user", text)])
    assert counted == ["one", "two", "three", "one"]  # "one" was evicted, so checked again
