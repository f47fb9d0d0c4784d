"""An answer's sources are kept with the conversation (issues 12 and 13): written by the reply's
final write, read back by ``GET /api/conversations/{id}`` and the export, shown again under the
reply when the page reopens the conversation, and never sent back to the model or cached.

The store round trip runs on SQLite and a real PostgreSQL; the REST and page tests use the real
knowledge base and store with a scripted backend (the model is not what they are about).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from guard_fakes import ScriptedBackend
from pg import DATABASES, empty_database
from service_support import DictCache, serve
from test_page_conversations import page_request

from chat import ChatEngine
from chat.backends.base import Chunk
from chat.i18n import detect_language
from chat.knowledge import KnowledgeBase
from chat.messages import GenerationParams, Message
from chat.reply.pipeline import Pipeline
from chat.reply.turn import Reply, ReplyRequest, StoredConversation
from chat.store import Store
from chat.store.tables import messages
from chat.ui.convert import history_to_messages
from chat.ui.knowledge import SOURCES_ID, sources_bubble
from chat.ui.sidebar import ConversationList

OWNER = "anon:sources-1"
SOURCES = [
    {
        "document": "returns.md",
        "heading": "Returns > Refunds",
        "text": "Unused items can be returned within 30 days of delivery for a full refund.",
        "score": 3.25,
        "document_id": "doc-1",
    },
    {
        "document": "退货.md",
        "heading": "",
        "text": "商品在签收后三十天内可以无理由退货。",
        "score": 1.5,
        "document_id": "doc-2",
    },
]
RETURNS_MD = (
    b"# Returns\n\n## Refunds\n\nUnused items can be returned within 30 days of delivery for a full refund.\n"
)
RETURNS_ZH = "# 退货政策\n\n商品在签收后三十天内可以无理由退货，退款五个工作日内原路退回。\n".encode()
ANSWER = "Within 30 days."
DOCUMENT_ONLY = "full refund"  # in the document, never in the answer


class RecordingScripted(ScriptedBackend):
    """The scripted answer, keeping every prompt it was given."""

    def __init__(self, chunks: Sequence[str]) -> None:
        super().__init__(chunks)
        self.prompts: list[list[Message]] = []

    def stream(self, messages: Sequence[Message], params: GenerationParams, **kwargs: Any) -> Iterator[Chunk]:
        self.prompts.append(list(messages))
        return super().stream(messages, params, **kwargs)


def statements(store: Store) -> list[str]:
    """The SQL the store runs from now on (a live list)."""
    seen: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


# -- the store, on SQLite and PostgreSQL ----------------------------------------------------------


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = Store.open(empty_database(request, tmp_path))
    yield store
    store.close()


def test_sources_are_written_by_the_final_write_and_read_back(store: Store) -> None:
    conv = store.create_conversation(OWNER)
    store.add_message(OWNER, conv.id, "user", "How long do I have to return an item?")
    clock = [0.0]
    writer = store.reply_writer(OWNER, conv.id, interval=1.0, clock=lambda: clock[0])
    writer.append("Within")
    clock[0] = 2.0
    writer.append(" 30 days.")  # an intermediate write: no sources yet
    with store._tx() as c:
        assert (
            c.execute(sa.select(messages.c.sources).where(messages.c.id == writer.message_id)).scalar()
            is None
        )
    seen = statements(store)
    writer.finish("complete", sources=SOURCES)
    work = [s for s in seen if not s.startswith(("BEGIN", "COMMIT"))]  # SQLite's own transaction
    assert len(work) == 1 and work[0].startswith("UPDATE messages") and "sources" in work[0], (
        f"the sources ride on the final UPDATE, no extra statement: {seen}"
    )

    plain = store.reply_writer(OWNER, conv.id)  # a reply that used no documents
    plain.finish("complete", text="You're welcome.")

    got = store.get_conversation(OWNER, conv.id)
    assert [m.sources for m in got.messages] == [(), tuple(SOURCES), ()]
    body = got.to_dict()["messages"]
    assert body[1]["sources"] == SOURCES and body[1]["content"] == "Within 30 days."
    assert body[0]["sources"] == [] and body[2]["sources"] == []
    with store._tx() as c:  # SQL NULL, not a JSON null, for replies without sources
        nulls = c.execute(sa.select(sa.func.count()).where(messages.c.sources.is_(None))).scalar()
    assert nulls == 2
    exported = store.export_all(OWNER)["conversations"][0]["messages"]
    assert exported[1]["sources"] == SOURCES
    # display-only: the history the model gets back is the text alone
    assert store.history(OWNER, conv.id)[1] == Message("assistant", "Within 30 days.")


# -- REST: /api/chat with a knowledge base, then GET /api/conversations/{id} -------------------------


def test_rest_turn_keeps_its_sources_and_never_sends_them_back(tmp_path: Path) -> None:
    backend = RecordingScripted([ANSWER])
    cache = DictCache()
    engine = ChatEngine({"local": backend}, cache=cache)
    with serve(engine, data_dir=str(tmp_path)) as url, httpx.Client(base_url=url, timeout=30) as visitor:
        uploaded = visitor.post("api/knowledge/shop/documents", files={"file": ("returns.md", RETURNS_MD)})
        assert uploaded.is_success, uploaded.text
        asked = {
            "user_input": "How many days do I have to return an item?",
            "context": {"knowledge": "shop", "max_new_tokens": 8},
        }
        first = visitor.post("api/chat", json=asked).json()
        assert first["reply"] == ANSWER and first["sources"][0]["document"] == "returns.md", first
        assert DOCUMENT_ONLY in first["sources"][0]["text"]

        stored = visitor.get(f"api/conversations/{first['conversation_id']}").json()
        assert [(m["role"], m["sources"]) for m in stored["messages"]] == [
            ("user", []),
            ("assistant", first["sources"]),  # exactly what /api/chat returned
        ]
        exported = visitor.get("api/me/export").json()["conversations"]
        assert exported[0]["messages"][1]["sources"] == first["sources"]

        # the next turn, without a knowledge base: the stored sources are not context
        follow = {"user_input": "Thanks!", "conversation_id": first["conversation_id"]}
        assert visitor.post("api/chat", json=follow).json()["sources"] == []
        assert any(DOCUMENT_ONLY in m.content for m in backend.prompts[0]), "the first turn had the block"
        second = backend.prompts[1]
        assert [m.role for m in second if m.role != "system"] == ["user", "assistant", "user"]
        assert not any(DOCUMENT_ONLY in m.content or "returns.md" in m.content for m in second), second
        assert sorted(cache.store.values()) == [ANSWER, ANSWER], "the cache keeps reply texts only"
        again = visitor.get(f"api/conversations/{first['conversation_id']}").json()["messages"]
        assert [m["sources"] for m in again] == [[], first["sources"], [], []]


# -- the page: reopening a conversation shows the same sources block -------------------------------


@pytest.fixture
def page_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    yield store
    store.close()


@pytest.mark.parametrize(
    ("question", "title"),
    [("How many days do I have to return an item?", "Sources (1)"), ("退货要多少天？", "参考来源（1）")],
)
def test_reopening_shows_the_sources_block_as_it_streamed(
    page_store: Store, question: str, title: str
) -> None:
    """The turn runs through the pipeline the page's handler drives; the block it showed is
    ``sources_bubble(reply.sources, lang of the question)`` (chat.ui.handlers)."""
    library = KnowledgeBase(page_store.engine)
    library.add_document("shop", "returns.md", RETURNS_MD)
    library.add_document("shop", "退货.md", RETURNS_ZH)
    conversation = page_store.create_conversation(OWNER)
    pipeline = Pipeline(ChatEngine({"local": ScriptedBackend([ANSWER])}), knowledge=library)
    turn = ReplyRequest(
        messages=[Message("user", question)],
        params=GenerationParams(max_new_tokens=8),
        conversation=StoredConversation(page_store, OWNER, conversation.id),
        knowledge="shop",
    )
    reply = list(pipeline.run(turn))[-1]
    assert isinstance(reply, Reply) and len(reply.sources) == 1, reply
    streamed = sources_bubble(reply.sources, detect_language(question))

    # the page's locale is English either way: the block follows the question, as it streamed
    sidebar = ConversationList(page_store)
    _, count, shown, _ = sidebar.open(conversation.id, page_request(OWNER, "en-US"))
    assert count == len(shown) == 3, shown
    assert shown[:2] == [{"role": "user", "content": question}, {"role": "assistant", "content": ANSWER}]
    reopened = shown[2]
    assert reopened.metadata == streamed[0].metadata and reopened.metadata["title"] == title
    assert reopened.metadata["id"] == SOURCES_ID
    assert reopened.content == streamed[0].content, "one copy of the block's logic"

    # the next turn from the reopened page: the block is not sent back to the model
    history = [  # as the browser sends the chatbot back
        item
        if isinstance(item, dict)
        else {"role": item.role, "content": item.content, "metadata": item.metadata}
        for item in shown
    ]
    assert history_to_messages(history) == [Message("user", question), Message("assistant", ANSWER)]
