"""The conversation store's API on SQLite and on a real PostgreSQL: conversations, messages,
replies as they stream, owners kept apart, retention, delete-all and export-all."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta

import pytest
import sqlalchemy as sa
from pg import DATABASES, empty_database

from chat.errors import InvalidRequest
from chat.messages import Message
from chat.store import ConversationNotFound, Profile, Store
from chat.store.tables import conversations, messages, owners, utcnow

ALICE, BOB = "user:alice", "anon:bob-4f1c"


def rows(store: Store, table: sa.Table) -> int:
    with store._tx() as c:
        return c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    return empty_database(request, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    store = Store.open(url, retention_days=30)
    yield store
    store.close()


def test_a_turn_is_kept_and_read_back(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    assert store.get_conversation(ALICE, conv.id).messages == ()
    user_id = store.add_message(ALICE, conv.id, "user", "  What is   the capital of France?\n")
    with store.reply_writer(ALICE, conv.id) as writer:
        for delta in ("Paris", " is the", " capital."):
            writer.append(delta)
    got = store.get_conversation(ALICE, conv.id)
    assert got.title == "What is the capital of France?"
    assert [(m.role, m.content, m.status) for m in got.messages] == [
        ("user", "  What is   the capital of France?\n", "complete"),
        ("assistant", "Paris is the capital.", "complete"),
    ]
    assert got.messages[0].id == user_id and got.messages[1].id == writer.message_id
    assert store.history(ALICE, conv.id) == [
        Message("user", "  What is   the capital of France?\n"),
        Message("assistant", "Paris is the capital."),
    ]
    body = got.to_dict()
    assert body["id"] == conv.id and body["messages"][1]["role"] == "assistant"
    json.dumps(body)  # JSON-able as it is, for GET /api/conversations/{id}


def test_chinese_text_and_long_titles(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    question = "请介绍一下长城的历史。" * 10
    store.add_message(ALICE, conv.id, "user", question)
    got = store.get_conversation(ALICE, conv.id)
    assert got.messages[0].content == question
    assert got.title == question[:59] + "…"
    assert store.list_conversations(ALICE, search="长城")[0].id == conv.id


def test_list_is_newest_first_and_searchable(store: Store) -> None:
    first = store.create_conversation(ALICE, title="Recipes")
    second = store.create_conversation(ALICE)
    store.add_message(ALICE, second.id, "user", "How do I bake bread?")
    third = store.create_conversation(ALICE, title="100% discount codes")
    assert [c.id for c in store.list_conversations(ALICE)] == [third.id, second.id, first.id]
    store.add_message(ALICE, first.id, "user", "and a SOUP please")  # activity moves it to the top
    assert [c.id for c in store.list_conversations(ALICE)] == [first.id, third.id, second.id]
    assert [c.id for c in store.list_conversations(ALICE, limit=1)] == [first.id]
    assert [c.id for c in store.list_conversations(ALICE, search="soup")] == [first.id]  # a message
    assert [c.id for c in store.list_conversations(ALICE, search="BREAD")] == [second.id]
    assert [c.id for c in store.list_conversations(ALICE, search="recipes")] == [first.id]  # a title
    assert [c.id for c in store.list_conversations(ALICE, search="100%")] == [third.id]
    assert store.list_conversations(ALICE, search="0%_") == []  # % and _ are literal, not wildcards


def test_rename_and_delete(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    store.add_message(ALICE, conv.id, "user", "hello")
    assert store.rename(ALICE, conv.id, "Greetings") is True
    assert store.list_conversations(ALICE)[0].title == "Greetings"
    assert store.delete(ALICE, conv.id) is True
    assert store.get_conversation(ALICE, conv.id) is None
    assert store.delete(ALICE, conv.id) is False
    assert store.rename(ALICE, conv.id, "x") is False
    assert rows(store, messages) == 0  # the messages went with it (ON DELETE CASCADE)


def test_owners_are_isolated(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    message = store.add_message(ALICE, conv.id, "user", "my secret plans")
    reply = store.reply_writer(ALICE, conv.id)
    reply.finish(text="ok")
    # Bob sees nothing of Alice's, and her id behaves exactly like one that does not exist.
    for conv_id in (conv.id, "no-such-id"):
        assert store.get_conversation(BOB, conv_id) is None
        assert store.rename(BOB, conv_id, "mine now") is False
        assert store.delete(BOB, conv_id) is False
        assert store.set_summary(BOB, conv_id, "x") is False
        with pytest.raises(ConversationNotFound):
            store.add_message(BOB, conv_id, "user", "injected")
        with pytest.raises(ConversationNotFound):
            store.history(BOB, conv_id)
        with pytest.raises(ConversationNotFound):
            store.reply_writer(BOB, conv_id)
    assert store.list_conversations(BOB) == [] and store.list_conversations(BOB, search="secret") == []
    assert store.set_feedback(BOB, reply.message_id, -1) is False
    assert store.delete_all(BOB) == 0
    assert store.export_all(BOB)["conversations"] == []
    got = store.get_conversation(ALICE, conv.id)
    assert [m.id for m in got.messages] == [message, reply.message_id] and got.title == "my secret plans"
    assert got.messages[1].rating is None


def test_a_turn_starts_in_one_step_with_its_owners_notes_only(store: Store) -> None:
    """start_turn stores the message and the streaming reply and reads the summary and profile:
    always the caller's own, never another owner's (the read rides on the ownership check)."""
    store.save_profile(BOB, Profile(display_name="Bob", notes="Bob's private note", opt_in=True))
    store.create_conversation(BOB)
    conv = store.create_conversation(ALICE)
    first = store.start_turn(ALICE, conv.id, "你好，我想退货")
    assert (first.summary, first.profile) == ("", None)  # Alice has no profile: not Bob's
    stored = store.get_conversation(ALICE, conv.id)
    assert [(m.role, m.content, m.status) for m in stored.messages] == [
        ("user", "你好，我想退货", "complete"),
        ("assistant", "", "streaming"),
    ]
    assert stored.title == "你好，我想退货" and stored.messages[1].id == first.writer.message_id
    first.writer.finish(text="好的")

    store.save_profile(ALICE, Profile(display_name="Alice", language="zh", opt_in=True))
    store.set_summary(ALICE, conv.id, "Alice wants to return shoes.")
    second = store.start_turn(ALICE, conv.id, "What now?")
    assert second.summary == "Alice wants to return shoes."
    assert second.profile == Profile(display_name="Alice", language="zh", opt_in=True)
    second.writer.finish(text="Send them back.")
    with pytest.raises(ConversationNotFound):  # Bob cannot start a turn in Alice's conversation
        store.start_turn(BOB, conv.id, "injected")
    assert [m.content for m in store.get_conversation(ALICE, conv.id).messages] == [
        "你好，我想退货",
        "好的",
        "What now?",
        "Send them back.",
    ]


def test_ids_are_unguessable(store: Store) -> None:
    ids = [store.create_conversation(ALICE).id for _ in range(100)]
    assert len(set(ids)) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", i) for i in ids)  # 24 random bytes = 192 bits
    # No shared prefix or counter: the ids of consecutive conversations share no structure.
    assert len({i[:4] for i in ids}) > 95


def test_reply_writer_writes_at_most_once_per_interval(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    now = [0.0]
    writer = store.reply_writer(ALICE, conv.id, clock=lambda: now[0])

    def stored() -> tuple[str, str]:
        message = store.get_conversation(ALICE, conv.id).messages[-1]
        return message.content, message.status

    assert stored() == ("", "streaming")  # the row exists before the first token
    writer.append("Hel")
    now[0] = 0.5
    writer.append("lo")
    assert stored() == ("", "streaming")  # less than a second: not written yet
    now[0] = 1.0
    writer.append(",")
    assert stored() == ("Hello,", "streaming")
    now[0] = 1.4
    writer.append(" world")
    assert stored() == ("Hello,", "streaming")
    writer.finish("stopped")
    assert stored() == ("Hello, world", "stopped")
    writer.finish("complete")  # finished once; later calls change nothing
    assert stored() == ("Hello, world", "stopped")
    with pytest.raises(RuntimeError):
        writer.append("more")


def test_writer_status_follows_how_the_stream_ended(store: Store) -> None:
    conv = store.create_conversation(ALICE)

    def generate(fail: bool) -> Iterator[str]:
        with store.reply_writer(ALICE, conv.id) as writer:
            for word in ("one ", "two ", "three "):
                writer.append(word)
                if fail and word == "two ":
                    raise ConnectionError("backend went away")
                yield word

    stopped = generate(fail=False)
    assert next(stopped) == "one "
    stopped.close()  # Stop, or a closed tab, closes the generator (GeneratorExit)
    with pytest.raises(ConnectionError):
        list(generate(fail=True))
    list(generate(fail=False))
    with store.reply_writer(ALICE, conv.id) as writer:
        writer.append("draft")
        writer.finish("complete", text="guarded final text")
    statuses = [(m.content, m.status) for m in store.get_conversation(ALICE, conv.id).messages]
    assert statuses == [
        ("one ", "stopped"),
        ("one two ", "interrupted"),
        ("one two three ", "complete"),
        ("guarded final text", "complete"),
    ]


def test_reply_to_a_deleted_conversation_stops_writing(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    writer = store.reply_writer(ALICE, conv.id, interval=0)
    writer.append("partial")
    store.delete(ALICE, conv.id)
    writer.append(" more")  # the row is gone: nothing to update, and no error for the user
    writer.finish()
    assert store.get_conversation(ALICE, conv.id) is None and writer.failed_writes == 0


def test_history_leaves_out_replies_that_never_started(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    store.add_message(ALICE, conv.id, "user", "first")
    store.reply_writer(ALICE, conv.id).finish("interrupted")  # died before its first token
    store.add_message(ALICE, conv.id, "user", "second")
    assert store.history(ALICE, conv.id) == [Message("user", "first"), Message("user", "second")]


def test_retention_purges_idle_conversations(store: Store) -> None:
    idle = store.create_conversation(ALICE)
    store.add_message(ALICE, idle.id, "user", "old news")
    active = store.create_conversation(ALICE)
    bobs = store.create_conversation(BOB)
    with store._tx() as c:  # Alice's first and Bob's conversation were last active 40 days ago
        c.execute(
            sa.update(conversations)
            .where(conversations.c.id.in_([idle.id, bobs.id]))
            .values(updated_at=utcnow() - timedelta(days=40))
        )
    assert store.purge_expired() == 2
    assert [c.id for c in store.list_conversations(ALICE)] == [active.id]
    assert store.list_conversations(BOB) == [] and store.get_conversation(ALICE, idle.id) is None
    assert store.purge_expired(utcnow() + timedelta(days=29)) == 0  # idle 29 days: kept
    assert store.purge_expired(utcnow() + timedelta(days=31)) == 1
    assert rows(store, owners) == 0 and rows(store, messages) == 0  # owners left with nothing go too
    old = store.create_conversation(ALICE)
    with store._tx() as c:
        c.execute(sa.update(conversations).values(updated_at=utcnow() - timedelta(days=40)))
    store.purge_every(0.05)  # a long-running server purges on its own
    deadline = time.monotonic() + 30
    while store.get_conversation(ALICE, old.id) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get_conversation(ALICE, old.id) is None
    keep = Store(store.engine, retention_days=0)
    conv = keep.create_conversation(ALICE)
    assert keep.purge_expired(utcnow() + timedelta(days=10_000)) == 0
    assert keep.get_conversation(ALICE, conv.id) is not None


def test_export_all_then_delete_all(store: Store) -> None:
    store.save_profile(
        ALICE, Profile(display_name="Alice", language="zh", notes="喜欢简短的回答", opt_in=True)
    )
    first = store.create_conversation(ALICE)
    store.add_message(ALICE, first.id, "user", "Hi")
    writer = store.reply_writer(ALICE, first.id)
    writer.finish(text="Hello!")
    assert store.set_feedback(ALICE, writer.message_id, 1) is True
    second = store.create_conversation(ALICE, title="Empty")
    bob_conv = store.create_conversation(BOB)
    store.add_message(BOB, bob_conv.id, "user", "Bob's own")

    exported = json.loads(json.dumps(store.export_all(ALICE)))  # JSON-able as it is
    assert exported["format"] == "chat-export/1"
    assert exported["profile"] == {
        "display_name": "Alice",
        "language": "zh",
        "persona": "",
        "notes": "喜欢简短的回答",
        "opt_in": True,
    }
    assert [c["id"] for c in exported["conversations"]] == [first.id, second.id]
    first_messages = exported["conversations"][0]["messages"]
    assert [(m["role"], m["content"], m["status"], m["rating"]) for m in first_messages] == [
        ("user", "Hi", "complete", None),
        ("assistant", "Hello!", "complete", 1),
    ]
    assert "Bob's own" not in json.dumps(exported)

    assert store.delete_all(ALICE) == 2
    assert store.list_conversations(ALICE) == [] and store.get_profile(ALICE) is None
    after = store.export_all(ALICE)
    assert (after["profile"], after["conversations"]) == (None, [])
    assert store.history(BOB, bob_conv.id) == [Message("user", "Bob's own")]
    assert rows(store, messages) == 1  # only Bob's message is left anywhere


def test_feedback_and_profile(store: Store) -> None:
    conv = store.create_conversation(ALICE)
    user = store.add_message(ALICE, conv.id, "user", "Hi")
    writer = store.reply_writer(ALICE, conv.id)
    writer.finish(text="Hello")
    assert store.set_feedback(ALICE, user, 1) is False  # only replies are rated
    assert store.set_feedback(ALICE, writer.message_id, -1) is True
    assert store.get_conversation(ALICE, conv.id).messages[1].rating == -1
    assert store.set_feedback(ALICE, writer.message_id, 1) is True  # changing one's mind
    assert store.get_conversation(ALICE, conv.id).messages[1].rating == 1
    assert store.set_feedback(ALICE, writer.message_id, None) is True
    assert store.get_conversation(ALICE, conv.id).messages[1].rating is None
    assert store.get_profile(ALICE) is None
    store.save_profile(ALICE, Profile(display_name="Al"))
    store.save_profile(ALICE, Profile(display_name="Alice", persona="tutor", opt_in=True))
    assert store.get_profile(ALICE) == Profile(display_name="Alice", persona="tutor", opt_in=True)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda s, c: s.create_conversation(""), "owner must be text of 1 to 200"),
        (lambda s, c: s.list_conversations("x" * 201), "owner must be text of 1 to 200"),
        (lambda s, c: s.add_message(ALICE, c, "robot", "hi"), "role must be one of system, user, assistant"),
        (lambda s, c: s.add_message(ALICE, c, "user", "hi", status="done"), "status must be one of"),
        (lambda s, c: s.add_message(ALICE, c, "user", None), "content must be text"),
        (lambda s, c: s.rename(ALICE, c, "t" * 201), "title must be at most 200 characters"),
        (lambda s, c: s.set_feedback(ALICE, 1, 5), "rating must be 1, -1 or null"),
        (lambda s, c: s.list_conversations(ALICE, limit="ten"), "limit must be a whole number"),
        (lambda s, c: s.list_conversations(ALICE, search=["x"]), "search must be text"),
        (lambda s, c: s.save_profile(ALICE, Profile(notes="n" * 5000)), "notes must be at most"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, call, fragment: str) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")  # checked before any query: one database
    conv = store.create_conversation(ALICE)
    with closing(store), pytest.raises(InvalidRequest) as info:
        call(store, conv.id)
    assert fragment in str(info.value)
    assert fragment in info.value.user_message("en")


def test_a_real_reply_streams_into_the_store(engine, tmp_path) -> None:
    """The writer fed by the engine's own events (the real model): what the user saw is kept."""
    from chat.messages import Done, GenerationParams, TextDelta

    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    with closing(store):
        conv = store.create_conversation(ALICE)
        store.add_message(ALICE, conv.id, "user", "Name three colours.")
        params = GenerationParams(temperature=0.0, max_new_tokens=8)
        with store.reply_writer(ALICE, conv.id, interval=0) as writer:
            for event in engine.stream(store.history(ALICE, conv.id), params):
                if isinstance(event, TextDelta):
                    writer.append(event.text)
                elif isinstance(event, Done):
                    done = event
                    writer.finish("complete", text=event.text)
        reply = store.get_conversation(ALICE, conv.id).messages[-1]
        assert (reply.content, reply.status) == (done.text, "complete") and done.text.strip()
        assert store.history(ALICE, conv.id)[-1] == Message("assistant", done.text)
