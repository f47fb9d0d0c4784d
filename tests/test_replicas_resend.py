"""A message sent again to another replica is stored once (issue 32): two replicas of the service
routes, each with its own store on one real PostgreSQL and the same visitor key, served on
loopback. A client names its message with ``Idempotency-Key`` (``/api/chat``) or
``idempotency_key`` (a ``/ws`` frame), sends it to one replica and again to the other, also at
the same moment, and the conversation holds it once.

The backend is scripted (tests/guard_fakes.py): the test is about the store, not the model."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from fastapi import FastAPI
from guard_fakes import ScriptedBackend
from service_support import service_engine
from support import free_port
from websockets.sync.client import connect

from chat import Settings
from chat.server import Server
from chat.service import register
from chat.store import Store

VISITOR_KEY = secrets.token_bytes(32)  # the key every replica reads from the database


@pytest.fixture(scope="module")
def replicas(postgres) -> Iterator[list[str]]:  # noqa: ANN001
    """Two replicas' base URLs, on one database."""
    url = postgres.create_database(f"resend_{secrets.token_hex(4)}")
    with ExitStack() as stack:
        bases = []
        for _ in range(2):
            store = Store.open(url)
            stack.callback(store.close)
            engine = service_engine(ScriptedBackend(["Yes", ", we", " are."]))
            engine.cache = None  # every turn reaches the backend and is stored
            settings = Settings(n_ctx=2048, port=free_port(), rate_limit=0)
            app = FastAPI()
            register(app, engine, settings, store, visitor_key=VISITOR_KEY)
            server = Server(app, host="127.0.0.1", port=settings.port)
            server.start()
            stack.callback(server.stop)
            bases.append(server.local_url)
        yield bases


def send(http: httpx.Client, base: str, text: str, key: str, conversation_id: str = "") -> dict:
    body = {"user_input": text, "conversation_id": conversation_id}
    response = http.post(base + "api/chat", json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 200, response.text
    return response.json()


def messages(http: httpx.Client, base: str, conversation_id: str) -> list[tuple[str, str, str]]:
    found = http.get(f"{base}api/conversations/{conversation_id}").json()["messages"]
    return [(m["role"], m["content"], m["status"]) for m in found]


def test_a_message_sent_again_to_the_other_replica_is_stored_once(replicas: list[str]) -> None:
    a, b = replicas
    with httpx.Client(timeout=30) as http:  # one visitor: its cookie goes to both (one host)
        first = send(http, a, "Are you open today?", "m-1")
        again = send(http, b, "Are you open today?", "m-1")  # its answer never came: sent again
        cid = first["conversation_id"]
        assert again["conversation_id"] == cid  # the conversation the first copy opened
        second = send(http, b, "And on Sunday?", "m-2", cid)
        send(http, a, "And on Sunday?", "m-2", cid)
        assert second["reply"] == "Yes, we are."
        assert messages(http, a, cid) == [
            ("user", "Are you open today?", "complete"),
            ("assistant", "Yes, we are.", "complete"),
            ("user", "And on Sunday?", "complete"),
            ("assistant", "Yes, we are.", "complete"),
        ]
        # The same words under a new key are a new message.
        send(http, a, "And on Sunday?", "m-3", cid)
        assert [m[1] for m in messages(http, b, cid) if m[0] == "user"][-2:] == ["And on Sunday?"] * 2
        # A key too long is refused in the user's language, before anything is stored.
        refused = http.post(
            a + "api/chat",
            json={"user_input": "你们今天营业吗？", "conversation_id": cid},
            headers={"Idempotency-Key": "k" * 65},
        )
        assert refused.status_code == 400 and "最多 64 个字符" in refused.json()["error"]["message"]
        reused = http.post(  # a key that names another message: the client's mistake, said
            b + "api/chat",
            json={"user_input": "And on Monday?", "conversation_id": cid},
            headers={"Idempotency-Key": "m-2"},
        )
        assert reused.status_code == 400 and "idempotency key" in reused.json()["error"]["message"]
        assert len(messages(http, a, cid)) == 6


def test_the_same_message_to_both_replicas_at_once_is_stored_once(replicas: list[str]) -> None:
    a, b = replicas
    with httpx.Client(timeout=30) as http:
        cid = send(http, a, "Hello", "race-0")["conversation_id"]
        for n in range(1, 4):
            start, answers = threading.Barrier(2), []

            def post(
                base: str, n: int = n, start: threading.Barrier = start, answers: list = answers
            ) -> None:
                start.wait()
                answers.append(send(http, base, f"Question {n}", f"race-{n}", cid))

            threads = [threading.Thread(target=post, args=(base,)) for base in (a, b)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert [x["reply"] for x in answers] == ["Yes, we are."] * 2
        users = [m[1] for m in messages(http, b, cid) if m[0] == "user"]
        assert users == ["Hello", "Question 1", "Question 2", "Question 3"]


def test_a_ws_message_sent_again_on_the_other_replica_is_stored_once(replicas: list[str]) -> None:
    a, b = replicas
    with httpx.Client(timeout=30) as http:
        http.get(a + "api/conversations")  # the visitor cookie, for the sockets
        cookie = {"Cookie": f"chat_visitor={http.cookies['chat_visitor']}"}
        frame = {"user_input": "Do you ship to Lyon?", "idempotency_key": "ws-1"}
        done = []
        for base in (a, b):
            with connect(base.replace("http", "ws") + "ws", additional_headers=cookie) as socket:
                socket.send(json.dumps(frame))
                while (event := json.loads(socket.recv(timeout=30)))["type"] != "done":
                    assert event["type"] != "error", event
                done.append(event)
        assert done[0]["conversation_id"] == done[1]["conversation_id"]
        assert messages(http, a, done[0]["conversation_id"]) == [
            ("user", "Do you ship to Lyon?", "complete"),
            ("assistant", "Yes, we are.", "complete"),
        ]
