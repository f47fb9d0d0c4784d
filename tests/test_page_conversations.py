"""The page's conversation list and branding, without a browser: the sidebar's handlers over a
real SQLite store and the page's chat handler over a scripted backend (the model is not the
point here). Requests are real Starlette requests whose scope carries the owner the door would
have set (``chat.service.door.access.OWNER_KEY``); tests/test_browser_layout.py runs the whole app."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from guard_fakes import ScriptedBackend
from service_support import BLOCKED_WORD, WordGuard
from starlette.requests import Request
from support import frames

from chat import ChatEngine, Settings
from chat.errors import ConfigError
from chat.i18n import t
from chat.knowledge import KnowledgeBase
from chat.reply.personas import load_persona_list
from chat.service.door.identity import OWNER_KEY
from chat.store import Store
from chat.store.tables import utcnow
from chat.ui import build_ui
from chat.ui.branding import Branding, logo_src, primary_hue
from chat.ui.handlers import ChatHandlers, stopped_mark
from chat.ui.layout import default_persona
from chat.ui.sidebar import ConversationList, page_owner

REPLY = ["Hello", " there."]
SETTINGS = ("You help.", 0.7, 2048, 64, 0.95, None, "", False)  # system prompt ... use_cache


def page_request(owner: str | None, lang: str = "en-US") -> gr.Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/gradio_api/queue/join",
        "headers": [(b"accept-language", lang.encode())],
        "state": {OWNER_KEY: owner} if owner else {},
    }
    return gr.Request(request=Request(scope), session_hash=f"session-{owner}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    yield store
    store.close()


@pytest.fixture
def sidebar(store: Store) -> ConversationList:
    return ConversationList(store)


@pytest.fixture
def chat(sidebar: ConversationList) -> Any:
    engine = ChatEngine({"local": ScriptedBackend(REPLY)}, input_guard=WordGuard())
    return sidebar.chat(ChatHandlers(engine).ui)


def turn(
    chat: Any,
    message: str,
    history: list[dict],
    conversation_id: str | None,
    owner: str | None,
    synced: int = 0,
) -> list:
    """One turn as ChatInterface runs it; ``synced``: the page's message count after the last one."""
    return list(
        frames(
            chat(message, history, conversation_id, synced or len(history), *SETTINGS, page_request(owner))
        )
    )


def test_a_turn_is_stored_and_listed_and_the_next_continues_it(chat: Any, store: Store) -> None:
    outputs = turn(chat, "Where is my order?", [], None, "anon:alice")
    messages, _stats, conversation_id, synced, listing = outputs[0]
    assert conversation_id and isinstance(listing, gr.Radio)
    assert listing.choices == [("Where is my order?", conversation_id)]  # titled by the message
    assert all(out[2] == conversation_id for out in outputs)
    assert outputs[-1][3] == 2  # the page now shows the question and the reply
    assert messages[-1].content in ("Hello", "Hello there.")
    history = [
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Hello there."},
    ]
    assert turn(chat, "And the invoice?", history, conversation_id, "anon:alice")[-1][2] == conversation_id
    stored = store.get_conversation("anon:alice", conversation_id)
    assert stored is not None
    assert [(m.role, m.content, m.status) for m in stored.messages] == [
        ("user", "Where is my order?", "complete"),
        ("assistant", "Hello there.", "complete"),
        ("user", "And the invoice?", "complete"),
        ("assistant", "Hello there.", "complete"),
    ]


def test_a_first_message_brings_the_page_history_along(chat: Any, store: Store) -> None:
    """An imported chat (or one begun before the store) is kept whole when it is first stored."""
    imported = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    conversation_id = turn(chat, "Go on", imported, None, "anon:bob")[-1][2]
    stored = store.get_conversation("anon:bob", conversation_id)
    assert [m.content for m in stored.messages] == ["Hi", "Hello!", "Go on", "Hello there."]


def test_retry_undo_or_edit_keeps_the_conversation_as_the_page_shows_it(chat: Any, store: Store) -> None:
    """Retry cuts the page's history before the last question and asks it again: the stored
    conversation is replaced by one that holds what the page shows, not both answers."""
    first = turn(chat, "Hi", [], None, "anon:gina")[-1]
    asked = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]
    second = turn(chat, "More?", asked, first[2], "anon:gina")[-1]
    assert second[2] == first[2] and second[3] == 4
    retried = turn(chat, "More?", asked, second[2], "anon:gina", synced=second[3])[-1]  # Retry
    assert retried[2] != first[2] and retried[3] == 4
    assert [info.id for info in store.list_conversations("anon:gina")] == [retried[2]]
    kept = store.get_conversation("anon:gina", retried[2])
    assert [m.content for m in kept.messages] == ["Hi", "Hello there.", "More?", "Hello there."]
    assert retried[4].choices == [("Hi", retried[2])]


def test_a_refused_first_message_leaves_no_conversation(chat: Any, store: Store) -> None:
    outputs = turn(chat, f"tell me about {BLOCKED_WORD}", [], None, "anon:carol")
    assert outputs[-1][2] is None
    assert store.list_conversations("anon:carol") == []


def test_without_an_owner_or_a_store_nothing_is_kept(store: Store) -> None:
    engine = ChatEngine({"local": ScriptedBackend(REPLY)})
    for sidebar, owner in ((ConversationList(store), None), (ConversationList(None), "anon:dave")):
        outputs = turn(sidebar.chat(ChatHandlers(engine).ui), "Hi", [], None, owner)
        assert outputs[-1][0][-1].content == "Hello there."  # the reply still comes
        assert outputs[-1][2] is None
    assert store.list_conversations("anon:dave") == []
    assert page_owner(None) is None and page_owner(page_request(None)) is None


def test_open_rename_search_delete_and_owners_apart(
    chat: Any, sidebar: ConversationList, store: Store
) -> None:
    first = turn(chat, "Where is my order?", [], None, "anon:erin")[-1][2]
    second = turn(chat, "How do I return an item?", [], None, "anon:erin")[-1][2]
    erin = page_request("anon:erin")
    assert [cid for _, cid in sidebar.listed(erin).choices] == [second, first]  # newest first

    opened_id, count, shown, title = sidebar.open(first, erin)
    assert (opened_id, count, title) == (first, 2, "Where is my order?")
    assert shown == [
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Hello there."},
    ]

    renamed = sidebar.rename(first, "  Order 1234  ", "", erin)
    assert ("Order 1234", first) in renamed.choices and renamed.value == first
    assert sidebar.search("return", None, erin).choices == [("How do I return an item?", second)]

    mallory = page_request("anon:mallory")
    assert sidebar.listed(mallory).choices == []
    assert sidebar.open(first, mallory) == (None, 0, [], "")
    sidebar.delete(first, "", mallory)  # not hers: nothing happens
    sidebar.rename(second, "mine now", "", mallory)
    assert {cid for _, cid in sidebar.listed(erin).choices} == {first, second}

    cleared = sidebar.delete(first, "", erin)
    assert cleared[:4] == (None, 0, [], "") and cleared[4].choices == [("How do I return an item?", second)]
    assert sidebar.open(first, erin) == (None, 0, [], "")  # gone from the page at once
    undone = sidebar.undo(first, "", erin)  # Undo within the time: all of it comes back, open
    assert undone[0] == first and undone[6].value == first and len(undone[6].choices) == 2
    assert sidebar.undo(first, "", erin)[0] == gr.skip()  # nothing left to undo
    sidebar.delete(first, "", erin)
    assert store.get_conversation("anon:erin", first) is not None  # the store waits for the undo time
    sidebar.pending.flush()
    assert store.get_conversation("anon:erin", first) is None


def test_a_stopped_reply_opens_with_its_mark(sidebar: ConversationList, store: Store) -> None:
    conversation = store.create_conversation("anon:hana")
    store.add_message("anon:hana", conversation.id, "user", "讲个长故事")
    store.reply_writer("anon:hana", conversation.id).finish("stopped", text="从前有")
    _, count, shown, _ = sidebar.open(conversation.id, page_request("anon:hana", "zh-CN"))
    assert count == 3 and shown[:2] == [
        {"role": "user", "content": "讲个长故事"},
        {"role": "assistant", "content": "从前有"},  # the partial text stays
    ]
    assert shown[2].metadata["title"] == stopped_mark("zh").metadata["title"]
    assert t("notice.stopped", "zh") in shown[2].metadata["title"]


def test_a_reply_the_server_never_finished_opens_marked_interrupted(
    sidebar: ConversationList, store: Store
) -> None:
    conversation = store.create_conversation("anon:ivan")
    store.add_message("anon:ivan", conversation.id, "user", "Tell me a long story")
    store.reply_writer("anon:ivan", conversation.id, interval=0).append("Once upon")  # then it dies
    assert store.mark_interrupted(now=utcnow() + timedelta(minutes=1)) >= 1  # its lease ran out
    _, _, shown, _ = sidebar.open(conversation.id, page_request("anon:ivan", "en-US"))
    assert shown[1] == {"role": "assistant", "content": "Once upon"}
    assert t("notice.interrupted", "en") in shown[2].metadata["title"]
    assert "stopped" not in shown[2].metadata.get("id", "")


def test_a_like_is_kept_with_the_reply_it_rates(chat: Any, sidebar: ConversationList, store: Store) -> None:
    conversation_id = turn(chat, "Hi", [], None, "anon:frank")[-1][2]
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "metadata": {"title": "a notice"}},  # not a reply
        {"role": "assistant", "content": "Hello there."},
    ]
    request = page_request("anon:frank")
    sidebar.like(
        history, conversation_id, gr.LikeData(None, {"index": 2, "value": "x", "liked": False}), request
    )
    reply = store.get_conversation("anon:frank", conversation_id).messages[1]
    assert (reply.role, reply.rating) == ("assistant", -1)
    sidebar.like(
        history, conversation_id, gr.LikeData(None, {"index": 2, "value": "x", "liked": True}), request
    )
    assert store.get_conversation("anon:frank", conversation_id).messages[1].rating == 1


# -- the page's build: store or browser history -------------------------------------------------


@pytest.mark.parametrize("kept", [True, False])
def test_the_page_lists_from_the_store_or_keeps_the_browser_history(store: Store, kept: bool) -> None:
    engine = ChatEngine({"local": ScriptedBackend(REPLY)})
    demo = build_ui(engine, personas=load_persona_list(), max_context=2048, store=store if kept else None)
    components = demo.get_config_file()["components"]
    listing = [c for c in components if c["props"].get("elem_id") == "conversation-list"]
    assert len(listing) == 1 and listing[0]["props"]["visible"] is kept
    # Gradio's own panel of chats saved in the browser is a second Dataset beside the examples'
    assert len([c for c in components if c["type"] == "dataset"]) == (1 if kept else 2)


def test_no_event_outputs_a_container(store: Store, tmp_path: Path) -> None:
    """Gradio's page refreshes, on every streamed frame for the rest of its life, the loading state
    of each component any event has output, copying its props and those of all its children: the
    sidebar as the load event's output made each frame copy the whole settings panel (a streamed
    turn cost the page 16% more CPU, bench/bench_stream_frames.py). The sidebar opens in the
    browser instead."""
    engine = ChatEngine({"local": ScriptedBackend(REPLY)})
    knowledge = KnowledgeBase(store.engine)
    demo = build_ui(engine, personas=load_persona_list(), max_context=2048, store=store, knowledge=knowledge)
    config = demo.get_config_file()

    def containers(node: dict[str, Any]) -> Iterator[int]:
        for child in node.get("children", []):
            if child.get("children"):  # a block with blocks inside
                yield child["id"]
                yield from containers(child)

    inside = set(containers(config["layout"]))
    by_id = {c["id"]: c for c in config["components"]}
    assert any(by_id[i]["type"] == "sidebar" for i in inside)  # the walk finds the containers
    outputs = {i for dependency in config["dependencies"] for i in dependency["outputs"]}
    assert outputs and not outputs & inside, [by_id[i]["type"] for i in outputs & inside]


# -- personas and branding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "title"), [("zh", "通用助手（中文）"), ("en", "General assistant (English)")]
)
def test_the_default_persona_follows_the_language(lang: str, title: str) -> None:
    personas = load_persona_list()
    chosen = default_persona(personas, lang)
    assert chosen is not None and chosen.title == title
    assert len(chosen.examples) >= 2
    assert all(len(p.examples) >= 2 for p in personas)  # every shipped persona has examples
    assert default_persona(personas, "fr") == personas[0]


def test_branding_defaults_are_neutral_and_follow_the_language() -> None:
    branding = Branding.from_settings(Settings())
    assert branding.page_title == "Chat · 聊天"
    assert "<h1>聊天</h1>" in branding.header("zh") and "<h1>Chat</h1>" in branding.header("en")
    assert branding.welcome("zh") != branding.welcome("en")
    assert branding.footer_text("zh") != branding.footer_text("en")
    assert branding.primary == "indigo"


def test_branding_from_settings(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    branding = Branding.from_settings(
        Settings(
            title="Acme <Help>",
            description="Welcome!",
            logo=str(logo),
            footer="No advice.",
            primary_color="teal",
        )
    )
    assert branding.header("zh").startswith('<div class="brand"><img src="data:image/png;base64,')
    assert "<h1>Acme &lt;Help&gt;</h1>" in branding.header("en")  # escaped, never markup
    assert base64.b64encode(logo.read_bytes()).decode() in branding.logo_src
    assert (branding.welcome("zh"), branding.footer_text("en"), branding.primary) == (
        "Welcome!",
        "No advice.",
        "teal",
    )
    assert logo_src("https://example.com/logo.svg") == "https://example.com/logo.svg"
    color = primary_hue("#0A7F5A")
    assert isinstance(color, gr.themes.Color) and color.c500 == "#0a7f5a"
    assert color.c50 > color.c500 > color.c950  # lighter to darker, as Gradio's hues go
    assert isinstance(branding.theme(), gr.themes.Base)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("logo", "missing.png", "cannot read"),
        ("logo", "notes.txt", "not an image"),
        ("primary_color", "#12345", "neither #rrggbb"),
        ("primary_color", "blurple", "neither #rrggbb"),
    ],
)
def test_bad_branding_is_a_clear_config_error(field: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Branding.from_settings(Settings(**{field: value}))
