"""The owner's profile and ratings (issue 12, point 7), through the served app on loopback.

GET/PUT /api/me/profile behind the same door as the other /api/me routes; the profile note goes
after the system prompt of that owner's turns only when they opt in (REST and /ws here; the page
uses the same pipeline); profile text passes the input guard; likes and dislikes are kept with
the reply they rate. The backend is scripted (the model is not the point): it records prompts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from guard_fakes import ScriptedBackend
from service_support import BLOCKED_WORD, serve, service_engine
from websockets.sync.client import connect

from chat.backends.base import Chunk
from chat.messages import GenerationParams, Message
from chat.reply.personas import load_persona_list
from chat.reply.profiles import NOTES_MAX_CHARS, NOTES_MAX_LINES, profile_note
from chat.service.door.identity import OWNER_KEY
from chat.store import Profile, Store
from chat.ui import build_ui
from chat.ui.profile import ProfileForm

SYSTEM = "You are a shop assistant."
ANA = {
    "display_name": "Ana  Lima",
    "language": "zh",
    "persona": "tutor",
    "notes": "Vegetarian\n\n  Lives in Porto  ",
    "use_in_prompt": True,
}


class Recorder(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__(["Hello", "."])
        self.seen: list[list[Message]] = []

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        self.seen.append(list(messages))
        return super().stream(messages, params, cancel=cancel, api_key=api_key)


@pytest.fixture(scope="module")
def backend() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def app(backend: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    engine = service_engine(backend)
    engine.cache = None
    with serve(engine, data_dir=str(tmp_path_factory.mktemp("profiles"))) as url:
        yield url


def client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=30)


def chat(http: httpx.Client, text: str, **body: object) -> dict:
    response = http.post("/api/chat", json={"user_input": text, "context": {"system_prompt": SYSTEM}, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_profile_is_kept_checked_and_only_its_owner_sees_it(app: str) -> None:
    with client(app) as http, client(app) as other:
        assert http.get("/api/me/profile").json() == {
            "display_name": "",
            "language": "",
            "persona": "",
            "notes": "",
            "use_in_prompt": False,
        }
        saved = http.put("/api/me/profile", json=ANA)
        assert saved.status_code == 200, saved.text
        expected = {**ANA, "display_name": "Ana Lima", "notes": "Vegetarian\nLives in Porto"}
        assert saved.json() == expected
        assert http.get("/api/me/profile").json() == expected
        assert other.get("/api/me/profile").json()["display_name"] == ""  # another owner

        export = http.get("/api/me/export").json()
        assert export["profile"] == expected
        assert http.delete("/api/conversations").status_code == 200  # delete all my data
        assert http.get("/api/me/profile").json()["display_name"] == ""


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"display_name": "x" * 101}, "display_name must be at most 100 characters"),
        ({"language": "fr"}, 'language must be one of: "", "en", "zh"'),
        ({"persona": "pirate"}, "persona must be one of"),
        ({"notes": "x" * (NOTES_MAX_CHARS + 1)}, f"notes must be at most {NOTES_MAX_CHARS} characters"),
        ({"notes": "line\n" * (NOTES_MAX_LINES + 1)}, f"notes must be at most {NOTES_MAX_LINES} lines"),
        ({"use_in_prompt": "yes"}, "use_in_prompt"),
        ({"display_name": 5}, "display_name"),
        ({"nickname": "Ana"}, "nickname"),
    ],
)
def test_a_bad_profile_is_refused_with_a_clear_message(app: str, body: dict, says: str) -> None:
    with client(app) as http:
        response = http.put("/api/me/profile", json=body)
        assert response.status_code == 400
        assert says in response.json()["error"]["message"]
        assert http.get("/api/me/profile").json()["display_name"] == ""  # nothing was kept


def test_the_refusal_is_in_chinese_for_a_chinese_caller(app: str) -> None:
    with client(app) as http:
        response = http.put("/api/me/profile", json={"language": "fr"}, headers={"Accept-Language": "zh-CN"})
        assert response.status_code == 400
        assert "必须是以下之一" in response.json()["error"]["message"]


def test_profile_text_passes_the_input_guard(app: str) -> None:
    with client(app) as http:
        assert http.put("/api/me/profile", json={"notes": "Likes tea"}).status_code == 200
        refused = http.put("/api/me/profile", json={"notes": f"I love {BLOCKED_WORD}"})
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "input_blocked"
        assert http.get("/api/me/profile").json()["notes"] == "Likes tea"  # the refused text was not kept


def test_the_note_follows_the_system_prompt_only_when_opted_in(app: str, backend: Recorder) -> None:
    with client(app) as http:
        http.put("/api/me/profile", json={**ANA, "use_in_prompt": False})
        cid = chat(http, "Hello")["conversation_id"]
        assert [m.role for m in backend.seen[-1]] == ["system", "user"]  # opted out: no note

        http.put("/api/me/profile", json=ANA)
        chat(http, "What do I eat?", conversation_id=cid)
        prompt = backend.seen[-1]
        assert prompt[0] == Message("system", SYSTEM)
        assert prompt[1].role == "system"
        assert "Ana Lima" in prompt[1].content and "Vegetarian\nLives in Porto" in prompt[1].content
        assert [m.content for m in prompt[2:]] == ["Hello", "Hello.", "What do I eat?"]
        stored = http.get(f"/api/conversations/{cid}").json()["messages"]
        assert all("Ana Lima" not in m["content"] for m in stored)  # a note, never a message

        cookie = f"chat_visitor={http.cookies['chat_visitor']}"
        url = app.replace("http://", "ws://") + f"ws?conversation_id={cid}"
        with connect(url, additional_headers={"Cookie": cookie}) as ws:
            ws.send(json.dumps({"user_input": "And over /ws?", "context": {"system_prompt": SYSTEM}}))
            while json.loads(ws.recv(timeout=30))["type"] not in ("done", "error"):
                pass
        assert backend.seen[-1][1] == prompt[1]


def test_the_note_is_in_the_turns_language_and_empty_profiles_add_nothing() -> None:
    profile = Profile(display_name="Ana", language="en", notes="Vegetarian", opt_in=True)
    zh = profile_note(profile, "zh")
    assert zh is not None and "称呼：Ana" in zh.content and "英文" in zh.content
    assert profile_note(Profile(opt_in=True), "en") is None
    assert profile_note(Profile(display_name="Ana"), "en") is None  # not opted in


def test_likes_and_dislikes_are_kept_with_the_reply_they_rate(app: str) -> None:
    with client(app) as http, client(app) as other:
        cid = chat(http, "Rate me")["conversation_id"]
        user_msg, reply = http.get(f"/api/conversations/{cid}").json()["messages"]
        url = f"/api/conversations/{cid}/messages/{reply['id']}/feedback"

        liked = http.post(url, json={"rating": 1})
        assert liked.status_code == 200 and liked.json()["rating"] == 1
        assert http.get(f"/api/conversations/{cid}").json()["messages"][1]["rating"] == 1
        assert http.post(url, json={"rating": -1}).status_code == 200
        assert http.get(f"/api/conversations/{cid}").json()["messages"][1]["rating"] == -1
        assert http.post(url, json={"rating": None}).status_code == 200
        assert http.get(f"/api/conversations/{cid}").json()["messages"][1]["rating"] is None

        for bad in ({"rating": 2}, {"rating": True}, {"rating": "1"}, {}):
            assert http.post(url, json=bad).status_code == 400, bad
        user_url = f"/api/conversations/{cid}/messages/{user_msg['id']}/feedback"
        assert http.post(user_url, json={"rating": 1}).status_code == 404  # only replies are rated
        assert (
            http.post(f"/api/conversations/{cid}/messages/abc/feedback", json={"rating": 1}).status_code
            == 404
        )
        assert other.post(url, json={"rating": 1}).status_code == 404  # not the caller's conversation
        assert http.get(f"/api/conversations/{cid}").json()["messages"][1]["rating"] is None


def test_profile_routes_answer_404_with_the_store_off(backend: Recorder, tmp_path: Path) -> None:
    with serve(service_engine(backend), store=False) as url, client(url) as http:
        response = http.get("/api/me/profile")
        assert response.status_code == 404 and response.json()["error"]["type"] == "store_off"


class PageRequest:
    """What the page's handlers read from a ``gr.Request``: the door's owner and the language."""

    def __init__(self, owner: str, lang: str = "en") -> None:
        self.request = SimpleNamespace(scope={"state": {OWNER_KEY: owner}})
        self.headers = {"accept-language": lang}


def test_the_page_form_loads_checks_and_saves_the_same_profile(backend: Recorder, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'chat.db'}")
    try:
        engine = service_engine(backend)
        demo = build_ui(engine, personas=load_persona_list(), max_context=2048, store=store)
        assert any(getattr(b, "elem_id", None) == "profile-save" for b in demo.blocks.values())
        form = ProfileForm(store, engine)
        ana, zh = PageRequest("user:ana"), PageRequest("user:ana", "zh-CN")
        assert form.load(ana) == ("", "", "", "", False)
        assert form.save("Ana", "zh", "tutor", "Vegetarian", True, ana) == "Profile saved."
        assert form.load(ana) == ("Ana", "zh", "tutor", "Vegetarian", True)
        assert form.load(PageRequest("user:bob")) == ("", "", "", "", False)  # another owner
        assert "必须是以下之一" in form.save("Ana", "fr", "", "", True, zh)
        assert (
            form.save("Ana", "", "", f"{BLOCKED_WORD} fan", True, ana)
            == "Sorry, I can't help with that request."
        )
        assert form.load(ana) == ("Ana", "zh", "tutor", "Vegetarian", True)  # refusals keep nothing
    finally:
        store.close()
