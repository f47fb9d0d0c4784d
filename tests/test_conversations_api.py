"""Conversations kept on the server, through the APIs: /api/chat, /api/conversations, /ws.

The app is served for real on loopback with its store (SQLite in a temporary folder, and once
PostgreSQL). The backend is scripted where the model is not the point: it records the messages
it was given, so a test can see that a continued conversation reached it with its stored
history; one test runs the real model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from guard_fakes import ScriptedBackend
from service_support import BLOCKED_WORD, serve, service_engine, sse_events
from websockets.sync.client import connect

from chat import ChatEngine
from chat.backends.base import Chunk, Finish
from chat.backends.local.backend import LlamaCppBackend
from chat.engine.retry import RetryPolicy
from chat.messages import GenerationParams, Message
from chat.reply.pipeline import run
from chat.reply.turn import Failure, ReplyRequest, StoredConversation
from chat.service.errors import from_chat_error
from chat.store import ConversationNotFound, Store, StoreError

REPLY = ["Hello", " there", "."]


class RecordingBackend(ScriptedBackend):
    """The scripted reply, optionally slowed down; keeps the messages of every request."""

    def __init__(self) -> None:
        super().__init__(REPLY)
        self.seen: list[list[Message]] = []
        self.delay = 0.0

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        self.seen.append(list(messages))
        for chunk in super().stream(messages, params, cancel=cancel, api_key=api_key):
            if self.delay and cancel is not None and cancel.wait(self.delay):
                yield Finish("cancelled")  # as the real backends end a stopped reply
                return
            yield chunk


@pytest.fixture(scope="module")
def shared_backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def backend(shared_backend: RecordingBackend) -> Iterator[RecordingBackend]:
    """The module's backend, back to its plain script after each test."""
    yield shared_backend
    shared_backend.delay, shared_backend.fail_after = 0.0, None
    shared_backend.seen.clear()


def chat_engine(backend: RecordingBackend) -> ChatEngine:
    engine = service_engine(backend)
    engine.cache = None  # every turn must reach the backend
    engine.retry = RetryPolicy(max_attempts=1)  # a failing backend fails at once
    return engine


@pytest.fixture(scope="module")
def app(shared_backend: RecordingBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app for the module: each test's clients are new owners, so they see only their own."""
    folder = tmp_path_factory.mktemp("conversations")
    with serve(chat_engine(shared_backend), data_dir=str(folder)) as url:
        yield url


def client(base: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=30, headers=headers)


def say(http: httpx.Client, text: str, **body: object) -> dict:
    response = http.post("/api/chat", json={"user_input": text, **body})
    assert response.status_code == 200, response.text
    return response.json()


def contents(messages: Sequence[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


def rest_flow(base: str, backend: RecordingBackend) -> None:
    """Create by the first message, continue by id alone, then list, get, rename, export, delete."""
    with client(base) as http:
        first = say(http, "My name is Ada.")
        cid = first["conversation_id"]
        assert first["reply"] == "Hello there."
        second = say(http, "What is my name?", conversation_id=cid)
        assert second["conversation_id"] == cid
        # The client sent no history: the backend got the stored one.
        assert contents(backend.seen[-1]) == [
            ("user", "My name is Ada."),
            ("assistant", "Hello there."),
            ("user", "What is my name?"),
        ]
        other = say(http, "A second chat")["conversation_id"]
        assert other != cid

        listed = http.get("/api/conversations").json()["conversations"]
        assert [c["id"] for c in listed] == [other, cid]  # newest first
        assert listed[1]["title"] == "My name is Ada."
        found = http.get("/api/conversations", params={"search": "NAME is ada"}).json()
        assert [c["id"] for c in found["conversations"]] == [cid]

        got = http.get(f"/api/conversations/{cid}").json()
        assert got["id"] == cid
        assert [(m["role"], m["content"], m["status"]) for m in got["messages"]] == [
            ("user", "My name is Ada.", "complete"),
            ("assistant", "Hello there.", "complete"),
            ("user", "What is my name?", "complete"),
            ("assistant", "Hello there.", "complete"),
        ]

        renamed = http.patch(f"/api/conversations/{cid}", json={"title": "About Ada"})
        assert renamed.status_code == 200 and renamed.json()["title"] == "About Ada"
        assert http.get(f"/api/conversations/{cid}").json()["title"] == "About Ada"

        export = http.get("/api/me/export")
        assert export.status_code == 200
        assert "attachment" in export.headers["content-disposition"]
        assert {c["id"] for c in export.json()["conversations"]} == {cid, other}

        assert http.delete(f"/api/conversations/{other}").json() == {"id": other, "deleted": True}
        assert http.get(f"/api/conversations/{other}").status_code == 404
        assert http.delete(f"/api/conversations/{other}").status_code == 404
        assert http.delete("/api/conversations").json() == {"deleted": 1}
        assert http.get("/api/conversations").json() == {"conversations": []}
        gone = http.post("/api/chat", json={"user_input": "Still there?", "conversation_id": cid})
        assert gone.status_code == 404
        assert gone.json()["error"]["type"] == "not_found"


def test_rest_flow_on_sqlite(app: str, backend: RecordingBackend) -> None:
    rest_flow(app, backend)


def test_rest_flow_on_postgresql(
    postgres: object, backend: RecordingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.clean_database()  # type: ignore[attr-defined]
    with serve(chat_engine(backend), database_url=url) as base:
        rest_flow(base, backend)


def test_two_replicas_share_conversations_on_postgresql(postgres: object, backend: RecordingBackend) -> None:
    """Two app processes on one database with one CHAT_COOKIE_SECRET: either continues the
    conversation the other started, for the same anonymous browser."""
    url = postgres.clean_database()  # type: ignore[attr-defined]
    shared = {"database_url": url, "cookie_secret": "replica-secret"}
    with serve(chat_engine(backend), **shared) as one, serve(chat_engine(backend), **shared) as two:
        with client(one) as first:
            cid = say(first, "Started on one")["conversation_id"]
            cookie = first.cookies["chat_visitor"]
        with client(two) as second:
            second.cookies.set("chat_visitor", cookie)
            assert say(second, "Continued on two", conversation_id=cid)["conversation_id"] == cid
            assert contents(backend.seen[-1])[0] == ("user", "Started on one")
            assert [c["id"] for c in second.get("/api/conversations").json()["conversations"]] == [cid]


def test_anonymous_conversations_survive_a_restart(backend: RecordingBackend, tmp_path: Path) -> None:
    with serve(chat_engine(backend), data_dir=str(tmp_path)) as base, client(base) as http:
        cid = say(http, "Before the restart")["conversation_id"]
        cookie = http.cookies["chat_visitor"]
    assert not (tmp_path / "visitor.key").exists()  # the key signing cookies is in the database
    with serve(chat_engine(backend), data_dir=str(tmp_path)) as base, client(base) as http:
        http.cookies.set("chat_visitor", cookie)
        assert http.get(f"/api/conversations/{cid}").json()["messages"][0]["content"] == "Before the restart"


def test_owners_never_see_each_other(app: str) -> None:
    with client(app) as alice, client(app) as bob:
        cid = say(alice, "Alice's secret plan")["conversation_id"]
        assert "chat_visitor" in alice.cookies  # an anonymous browser gets its owner cookie
        say(bob, "Bob's chat")
        assert [c["title"] for c in bob.get("/api/conversations").json()["conversations"]] == ["Bob's chat"]
        assert bob.get("/api/conversations", params={"search": "secret"}).json()["conversations"] == []
        assert bob.get(f"/api/conversations/{cid}").status_code == 404
        assert bob.patch(f"/api/conversations/{cid}", json={"title": "mine"}).status_code == 404
        assert bob.delete(f"/api/conversations/{cid}").status_code == 404
        stolen = bob.post("/api/chat", json={"user_input": "continue", "conversation_id": cid})
        assert stolen.status_code == 404
        assert bob.delete("/api/conversations").json() == {"deleted": 1}  # only his own
        assert alice.get(f"/api/conversations/{cid}").json()["title"] == "Alice's secret plan"
        assert "secret" not in json.dumps(bob.get("/api/me/export").json())
    with client(app) as stranger:  # no cookie at all, or a forged one: nobody's conversations
        assert stranger.get(f"/api/conversations/{cid}").status_code == 404
        stranger.cookies.set("chat_visitor", "forged.0123456789abcdef0123456789abcdef")
        assert stranger.get("/api/conversations").json() == {"conversations": []}


def test_login_and_token_are_owners(backend: RecordingBackend, tmp_path: Path) -> None:
    settings = {"auth": "alice:pw", "api_token": "tok-123", "data_dir": str(tmp_path)}
    with serve(chat_engine(backend), **settings) as base:
        with client(base) as anonymous:
            assert anonymous.get("/api/conversations").status_code == 401
        with client(base, authorization="Bearer tok-123") as api:
            api_cid = say(api, "from the API")["conversation_id"]
        with client(base, authorization="Bearer tok-123") as same_token:  # another connection, no cookie
            assert [c["id"] for c in same_token.get("/api/conversations").json()["conversations"]] == [
                api_cid
            ]
        with httpx.Client(base_url=base, auth=("alice", "pw"), timeout=30) as alice:
            assert alice.get("/api/conversations").json() == {"conversations": []}
            assert alice.get(f"/api/conversations/{api_cid}").status_code == 404
            say(alice, "from Alice")
            export = alice.get("/api/me/export").text
        assert "from Alice" in export and "tok-123" not in export and "from the API" not in export


def test_ids_are_unguessable(app: str) -> None:
    with client(app) as http:
        ids = [say(http, f"chat {i}")["conversation_id"] for i in range(4)]
    assert len(set(ids)) == 4
    assert all(len(i) >= 32 for i in ids)  # 192 random bits, not a counter
    assert not any(set(a) <= set("0123456789") for a in ids)


def test_sse_done_frame_names_the_conversation(app: str, backend: RecordingBackend) -> None:
    with client(app) as http:
        cid = say(http, "Start")["conversation_id"]
        with http.stream(
            "POST", "/api/chat", json={"user_input": "Go on", "conversation_id": cid, "stream": True}
        ) as response:
            assert response.headers["x-conversation-id"] == cid
            events = list(sse_events(response.iter_lines()))
        done = json.loads(next(data for name, data in events if name == "done"))
        assert done["conversation_id"] == cid
        with http.stream("POST", "/api/chat", json={"user_input": "New", "stream": True}) as response:
            events = list(sse_events(response.iter_lines()))
        fresh = json.loads(next(data for name, data in events if name == "done"))["conversation_id"]
        assert fresh not in (cid, "")
        assert len(http.get(f"/api/conversations/{cid}").json()["messages"]) == 4


def ws_url(base: str, conversation_id: str = "") -> str:
    query = f"?conversation_id={conversation_id}" if conversation_id else ""
    return base.replace("http://", "ws://") + "ws" + query


def ws_turn(ws: object, text: str) -> dict:
    ws.send(json.dumps({"user_input": text}))  # type: ignore[attr-defined]
    while True:
        frame = json.loads(ws.recv(timeout=30))  # type: ignore[attr-defined]
        if frame["type"] in ("done", "error"):
            return frame


def test_websocket_resumes_a_stored_conversation(app: str, backend: RecordingBackend) -> None:
    with client(app) as http:
        cid = say(http, "Remember 42.")["conversation_id"]
        cookie = f"chat_visitor={http.cookies['chat_visitor']}"
    with connect(ws_url(app, cid), additional_headers={"Cookie": cookie}) as ws:
        done = ws_turn(ws, "What number?")
        assert done["type"] == "done" and done["conversation_id"] == cid
        assert contents(backend.seen[-1])[:2] == [("user", "Remember 42."), ("assistant", "Hello there.")]
        ws.send(json.dumps({"type": "reset"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "reset"
        fresh = ws_turn(ws, "Hi again")
        assert fresh["conversation_id"] != cid
        assert contents(backend.seen[-1]) == [("user", "Hi again")]
    with client(app) as http:
        http.cookies.set("chat_visitor", cookie.split("=", 1)[1])
        messages = http.get(f"/api/conversations/{cid}").json()["messages"]
        assert [m["content"] for m in messages][-2:] == ["What number?", "Hello there."]
    # Someone else's id (here: no cookie, so another owner): an error frame, then the socket closes.
    with connect(ws_url(app, cid)) as ws:
        assert "chat_visitor=" in ws.response.headers["set-cookie"]  # a new anonymous owner
        frame = json.loads(ws.recv(timeout=10))
        assert frame["type"] == "error" and frame["status"] == 404
        with pytest.raises(Exception):  # noqa: B017 - closed by the server
            ws.recv(timeout=10)


def test_stopped_and_failed_replies_keep_the_user_message(app: str, backend: RecordingBackend) -> None:
    with client(app) as http:
        cid = say(http, "First")["conversation_id"]
        cookie = f"chat_visitor={http.cookies['chat_visitor']}"
        backend.delay = 0.5  # slow enough to stop after the first words
        with connect(ws_url(app, cid), additional_headers={"Cookie": cookie}) as ws:
            ws.send(json.dumps({"user_input": "Tell me a long story"}))
            while json.loads(ws.recv(timeout=30))["type"] != "delta":
                pass
            ws.send(json.dumps({"type": "cancel"}))
            while (frame := json.loads(ws.recv(timeout=30)))["type"] != "done":
                pass
            assert frame["conversation_id"] == cid and frame["finish_reason"] == "cancelled"
        backend.delay = 0.0
        backend.fail_after = 0  # the backend fails before any text: a JSON error
        failed = http.post("/api/chat", json={"user_input": "Are you there?", "conversation_id": cid})
        assert failed.status_code == 503 and failed.json()["conversation_id"] == cid
        backend.fail_after = 1  # the backend breaks after the first chunk
        broken = http.post("/api/chat", json={"user_input": "And now?", "conversation_id": cid})
        assert broken.status_code in (200, 503), broken.text  # cut off mid-reply, or failed
        assert broken.json()["conversation_id"] == cid
        messages = http.get(f"/api/conversations/{cid}").json()["messages"]
        statuses = [(m["role"], m["content"], m["status"]) for m in messages]
        assert statuses[2][:2] == ("user", "Tell me a long story")
        assert statuses[3][0] == "assistant" and statuses[3][2] == "stopped"
        assert statuses[3][1].startswith("Hello")
        assert statuses[4] == ("user", "Are you there?", "complete")  # kept though no reply came
        assert statuses[5] == ("assistant", "", "interrupted")
        assert statuses[6] == ("user", "And now?", "complete")
        assert statuses[7][0] == "assistant" and statuses[7][2] == "interrupted"


def test_refused_message_is_never_stored(app: str, backend: RecordingBackend) -> None:
    with client(app) as http:
        cid = say(http, "Hello")["conversation_id"]
        refused = say(http, f"I like {BLOCKED_WORD}", conversation_id=cid)
        assert refused["blocked"] is True and refused["conversation_id"] == cid
        stored = json.dumps(http.get(f"/api/conversations/{cid}").json())
        assert BLOCKED_WORD not in stored
        say(http, "Next", conversation_id=cid)  # the conversation goes on
        assert BLOCKED_WORD not in json.dumps([m.content for m in backend.seen[-1]])


def test_bad_requests_are_refused_clearly(app: str) -> None:
    with client(app) as http:
        bad = http.post("/api/chat", json={"user_input": "x", "conversation_id": 7})
        assert bad.status_code == 400 and "conversation_id" in bad.json()["error"]["message"]
        assert http.get("/api/conversations", params={"limit": "many"}).status_code == 400
        assert http.get("/api/conversations", params={"colour": "red"}).status_code == 400
        missing = http.patch("/api/conversations/nope", json={"name": "x"})
        assert missing.status_code == 400
        long_title = http.patch("/api/conversations/nope", json={"title": "x" * 10_000})
        assert long_title.status_code == 400 and "title" in long_title.json()["error"]["message"]
        assert http.get("/api/conversations").json() == {"conversations": []}  # nothing was created


def test_store_off_is_stateless(backend: RecordingBackend) -> None:
    with serve(chat_engine(backend), store=False) as base, client(base) as http:
        reply = say(http, "Hi", context={"history": [{"role": "user", "content": "Before"}]})
        assert "conversation_id" not in reply
        assert contents(backend.seen[-1]) == [("user", "Before"), ("user", "Hi")]
        for method, path in [
            ("GET", "/api/conversations"),
            ("GET", "/api/conversations/abc"),
            ("DELETE", "/api/conversations"),
            ("GET", "/api/me/export"),
        ]:
            response = http.request(method, path)
            assert response.status_code == 404
            assert "CHAT_STORE=off" in response.json()["error"]["message"]
        resumed = http.post("/api/chat", json={"user_input": "x", "conversation_id": "abc"})
        assert resumed.status_code == 404
        zh = http.get("/api/conversations", headers={"accept-language": "zh-CN"})
        assert "不保存" in zh.json()["error"]["message"]


def test_real_model_continues_a_stored_conversation(local_backend: LlamaCppBackend, tmp_path: Path) -> None:
    engine = ChatEngine({"local": local_backend})
    with serve(engine, data_dir=str(tmp_path)) as base, client(base) as http:
        params = {"max_new_tokens": 8, "temperature": 0.0}
        first = say(http, "Say hello.", context=params)
        second = say(http, "Say it again.", conversation_id=first["conversation_id"], context=params)
        assert second["reply"].strip()
        stored = http.get(f"/api/conversations/{first['conversation_id']}").json()["messages"]
        assert [m["content"] for m in stored] == [
            "Say hello.",
            first["reply"],
            "Say it again.",
            second["reply"],
        ]
        assert second["prompt_tokens"] > first["prompt_tokens"]  # the stored turn was in the prompt
        assert all(m["status"] == "complete" for m in stored)


def test_history_sent_with_a_new_conversation_is_kept(app: str, backend: RecordingBackend) -> None:
    history = [{"role": "user", "content": "I am Lin."}, {"role": "assistant", "content": "Hi Lin!"}]
    with client(app) as http:
        cid = say(http, "Who am I?", context={"history": history})["conversation_id"]
        say(
            http, "Again?", conversation_id=cid, context={"history": [{"role": "user", "content": "ignored"}]}
        )
        assert contents(backend.seen[-1]) == [
            ("user", "I am Lin."),
            ("assistant", "Hi Lin!"),
            ("user", "Who am I?"),
            ("assistant", "Hello there."),
            ("user", "Again?"),
        ]


def test_a_turn_in_a_missing_conversation_fails_before_generating(
    backend: RecordingBackend, tmp_path: Path
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    try:
        gone = StoredConversation(store, "anon:x", "no-such-conversation")
        request = ReplyRequest(messages=[Message("user", "Hi")], params=GenerationParams(), conversation=gone)
        *_, outcome = run(chat_engine(backend), request)
        assert isinstance(outcome, Failure) and isinstance(outcome.error, ConversationNotFound)
        assert backend.seen == []  # nothing generated for a turn that could not be kept
        assert from_chat_error(outcome.error, "zh").status == 404
        assert from_chat_error(StoreError("down"), "zh").status == 503
    finally:
        store.close()


def test_the_page_and_the_api_share_an_anonymous_owner(app: str) -> None:
    with client(app) as browser:
        assert browser.get("/").status_code == 200
        cookie = browser.cookies["chat_visitor"]  # the page load handed out the owner cookie
        cid = say(browser, "From the page's browser")["conversation_id"]
        assert browser.cookies["chat_visitor"] == cookie  # no new owner for its API calls
        assert [c["id"] for c in browser.get("/api/conversations").json()["conversations"]] == [cid]


def test_behind_share_only_the_page_hands_out_owner_cookies(
    backend: RecordingBackend, tmp_path: Path
) -> None:
    """Through the tunnel everyone is loopback and the cookie keys the rate limit: a script
    without one gets no new identity from the API (its conversation lasts one request)."""
    with serve(chat_engine(backend), share=True, data_dir=str(tmp_path)) as base:
        with client(base) as script:
            cid = say(script, "No cookie")["conversation_id"]
            assert "chat_visitor" not in script.cookies
            assert script.get(f"/api/conversations/{cid}").status_code == 404
        with client(base) as browser:
            browser.get("/")
            cid = say(browser, "From the page")["conversation_id"]
            assert browser.get(f"/api/conversations/{cid}").json()["title"] == "From the page"
