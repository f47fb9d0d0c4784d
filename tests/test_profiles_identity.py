"""The profile note and who the assistant is (issue 35): with a name in its prompt, the embedded
model answered "What is your name?" with the user's name. The note says whose facts they are, and
a message about the assistant itself gets no note; the real model (greedy, through the reply
pipeline and a real store) then does not take the user's name. How often it still does when
sampled, and how often it answers "What is my name?" right, is measured by
bench/bench_profile_identity.py (the small model gets the user's own name right too rarely to
assert it here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from guard_fakes import SpyBackend

from chat import ChatEngine
from chat.backends.local.backend import LlamaCppBackend
from chat.i18n import Lang
from chat.messages import GenerationParams, Message
from chat.reply.personas import load_persona_list
from chat.reply.pipeline import run
from chat.reply.profiles import asks_about_assistant, profile_note
from chat.reply.turn import Reply, ReplyRequest, StoredConversation
from chat.store import Profile, Store

ADA = Profile(display_name="Ada", language="en", notes="Vegetarian", opt_in=True)
XIAOMING = Profile(display_name="小明", language="zh", notes="素食", opt_in=True)
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=24, context_length=2048)
# The assistant claiming a name: "My name is Ada", "I'm Ada", "我是小明", "我叫小明"
CLAIM = (
    r"(?:\bI am|\bI'm|\bmy name is|\bcall me|我是|我叫|我的名字是)[^.!?。！？\n]{{0,24}}?{name}(?![A-Za-z])"
)


@pytest.mark.parametrize(
    "text",
    [
        "What is your name?",
        "Who are you?",
        "what's your name",
        "Tell me about yourself.",
        "What should I call you?",
        "你叫什么名字？",
        "你是谁？",
        "请介绍一下你自己。",
        "您贵姓？",
    ],
)
def test_a_message_about_the_assistant_gets_no_profile_note(text: str) -> None:
    assert asks_about_assistant(text)
    assert profile_note(ADA, "en", text) is None
    assert profile_note(XIAOMING, "zh", text) is None


@pytest.mark.parametrize(
    "text",
    [
        "What is my name?",
        "Do you know my name?",
        "Who am I?",
        "What is your name, and do you remember mine?",
        "Hello!",
        "What should I cook tonight?",
        "我叫什么名字？",
        "你知道我的名字吗？",
        "你好！",
    ],
)
def test_other_messages_get_the_note(text: str) -> None:
    assert not asks_about_assistant(text)
    note = profile_note(ADA, "en", text)
    assert note is not None and note.role == "system" and "Ada" in note.content


def test_the_note_says_the_facts_are_the_users_not_the_assistants() -> None:
    en, zh = profile_note(ADA, "en"), profile_note(XIAOMING, "zh")
    assert en is not None and zh is not None
    assert en.content.startswith("You are the assistant.")
    assert "not about you" in en.content and "The user's name: Ada." in en.content
    assert "\nName: Ada" not in en.content  # a bare "Name:" line reads as the assistant's own
    assert zh.content.startswith("你是助手。")
    assert "不是关于你的" in zh.content and "用户的称呼：小明。" in zh.content


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{Path(tmp_path_factory.mktemp('identity')) / 'chat.db'}")
    yield store
    store.close()


def ask(spy: SpyBackend, store: Store, profile: Profile, lang: Lang, text: str) -> tuple[str, list[Message]]:
    """One stored turn of the profile's owner through the reply pipeline, with the persona the
    page starts with: the reply and the prompt the model got."""
    owner = f"user:{lang}"
    store.save_profile(owner, profile)
    system = next(p.prompt for p in load_persona_list() if p.key == "general" and p.lang == lang)
    conversation = store.create_conversation(owner)
    request = ReplyRequest(
        messages=[Message("system", system), Message("user", text)],
        params=GREEDY,
        use_cache=False,
        conversation=StoredConversation(store, owner, conversation.id, new=True),
    )
    outcome = list(run(ChatEngine({"local": spy}), request))[-1]
    assert isinstance(outcome, Reply), outcome
    return outcome.text, spy.prompts[-1]


@pytest.mark.parametrize(
    ("profile", "lang", "about_itself", "about_the_user"),
    [
        (ADA, "en", "What is your name?", "What is my name?"),
        (XIAOMING, "zh", "你叫什么名字？", "我叫什么名字？"),
    ],
)
def test_the_real_model_is_not_given_the_users_name_as_its_own(
    local_backend: LlamaCppBackend,
    store: Store,
    profile: Profile,
    lang: Lang,
    about_itself: str,
    about_the_user: str,
) -> None:
    name = profile.display_name
    reply, prompt = ask(SpyBackend(local_backend), store, profile, lang, about_itself)
    assert [m.role for m in prompt] == ["system", "user"]  # no note: the name is nowhere in it
    assert name not in "".join(m.content for m in prompt)
    assert reply.strip() and not re.search(CLAIM.format(name=re.escape(name)), reply, re.IGNORECASE), reply

    # about the user: the note, after the persona (the prompt is the point: a scripted reply)
    reply, prompt = ask(SpyBackend(local_backend, reply=["Noted."]), store, profile, lang, about_the_user)
    assert [m.role for m in prompt] == ["system", "system", "user"]
    assert name in prompt[1].content and prompt[2].content == about_the_user
