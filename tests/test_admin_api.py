"""The operator's API over a real store: replies from the real model noted with their figures
(persona, time to first token, cache hit, the guard's category), the stats, the streamed sft and
dpo exports and their log, and who may have them: the operator on the server's own machine or
with the configured token, never a visitor (403 in their language) or a caller without the token.

In-process ASGI clients (no server) whose address says where they are: 127.0.0.1 is the server's
own machine, 203.0.113.9 a visitor. The engine is the session's SmolLM2 with the real rule files
and an in-memory response cache (tests/service_support.py ``DictCache``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from service_support import DictCache
from starlette.testclient import TestClient

from chat import ChatEngine, Settings
from chat.guards import build_guard
from chat.reply.personas import load_persona_list
from chat.service import register
from chat.store import open_store

TOKEN = "admin-test-token-51c"
TUTOR = next(p for p in load_persona_list() if p.key == "tutor" and p.lang == "en")
# A reply the model ends by itself (a JSON grammar): only such replies go into the cache.
JSON_ANSWER = {
    "model": "local",
    "messages": [{"role": "system", "content": TUTOR.prompt}, {"role": "user", "content": "Say ok."}],
    "max_tokens": 30,
    "temperature": 0,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "a",
            "schema": {"type": "object", "properties": {"a": {"enum": ["ok"]}}, "required": ["a"]},
        },
    },
}


def app_with(backend, folder: Path, **settings: object) -> Iterator[FastAPI]:
    config = Settings(n_ctx=2048, data_dir=str(folder), **settings)
    engine = ChatEngine({"local": backend}, input_guard=build_guard(config), cache=DictCache())
    store = open_store(config)
    app = FastAPI()
    register(app, engine, config, store)
    yield app
    store.close()


@pytest.fixture(scope="module")
def open_app(local_backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    yield from app_with(local_backend, tmp_path_factory.mktemp("admin-open"))


@pytest.fixture(scope="module")
def locked_app(local_backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    yield from app_with(local_backend, tmp_path_factory.mktemp("admin-locked"), api_token=TOKEN)


def operator(app: FastAPI) -> TestClient:
    return TestClient(app, client=("127.0.0.1", 50000))


def visitor(app: FastAPI) -> TestClient:
    return TestClient(app, client=("203.0.113.9", 50000))


def ask(client: TestClient, text: str) -> dict:
    body = {
        "user_input": text,
        "conversation_id": "",
        "context": {"system_prompt": TUTOR.prompt, "max_new_tokens": 4, "temperature": 0},
    }
    answer = client.post("/api/chat", json=body)
    return answer.json()


def rate(client: TestClient, conversation_id: str, rating: int) -> None:
    stored = client.get(f"/api/conversations/{conversation_id}").json()
    reply = stored["messages"][-1]
    answer = client.post(
        f"/api/conversations/{conversation_id}/messages/{reply['id']}/feedback", json={"rating": rating}
    )
    assert answer.status_code == 200, answer.text


def export(client: TestClient, query: str) -> list[dict]:
    with client.stream("GET", f"/api/admin/feedback/export?{query}") as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
        assert "attachment" in answer.headers["content-disposition"]
        return [json.loads(line) for line in answer.iter_lines() if line]


def test_replies_are_noted_and_the_operator_sees_and_exports_them(open_app: FastAPI) -> None:
    client = operator(open_app)
    first, second = ask(client, "Say ok."), ask(client, "Say ok.")  # two conversations, one prompt
    assert ask(client, "How to scam people online?")["blocked"] is True
    for _ in range(2):  # the same short answer twice: the second from the response cache
        answer = client.post("/v1/chat/completions", json=JSON_ANSWER)
        assert answer.json()["choices"][0]["finish_reason"] == "stop"
    rate(client, first["conversation_id"], 1)
    rate(client, second["conversation_id"], -1)

    stats = client.get("/api/admin/stats").json()
    today = stats["days"][-1]
    assert today["day"] == datetime.now(UTC).date().isoformat()
    assert (today["messages"], today["replies"], today["cache_hits"], today["refusals"]) == (5, 4, 1, 1)
    assert today["ttft_p50_ms"] is not None and today["ttft_p50_ms"] > 0
    assert stats["refusals"] == [{"category": "fraud", "count": 1}]
    [ratings] = stats["ratings"]
    assert (ratings["persona"], ratings["likes"], ratings["dislikes"]) == ("tutor", 1, 1)
    assert ratings["model"]  # the model that answered
    assert stats["disliked"][0]["conversation_id"] == second["conversation_id"]
    assert stats["personas"] == ["tutor"]

    [liked] = export(client, "format=sft&persona=tutor")
    assert liked["messages"][0] == {"role": "user", "content": "Say ok."} and liked["persona"] == "tutor"
    [pair] = export(client, "format=dpo")  # two conversations, the same prompt, one liked, one disliked
    assert pair["prompt"] == [{"role": "user", "content": "Say ok."}]
    assert export(client, "format=sft&persona=general") == []
    logged = client.get("/api/admin/exports").json()["exports"]
    assert [(e["format"], e["rows"], e["complete"]) for e in logged] == [
        ("sft", 0, True),
        ("dpo", 1, True),
        ("sft", 1, True),
    ]
    assert logged[0]["operator"].startswith("anon:") and "127.0.0.1" in logged[0]["operator"]


def test_only_the_operator_gets_the_page_and_its_data(open_app: FastAPI, locked_app: FastAPI) -> None:
    stranger = visitor(open_app)
    for path in ("/api/admin/stats", "/api/admin/feedback/export?format=sft", "/api/admin/exports"):
        answer = stranger.get(path, headers={"Accept-Language": "zh-CN"})
        assert answer.status_code == 403, path
        assert "运营者" in answer.json()["error"]["message"]
    page = stranger.get("/admin")
    assert page.status_code == 403 and "operator" in page.text and "<svg" not in page.text
    assert operator(open_app).get("/admin").status_code == 200

    anyone = visitor(locked_app)
    assert anyone.get("/api/admin/stats").status_code == 401  # the door: the token is needed
    assert anyone.get("/admin", follow_redirects=False).status_code == 303  # to the login first
    signed = {"Authorization": f"Bearer {TOKEN}"}
    assert anyone.get("/api/admin/stats", headers=signed).status_code == 200
    assert 'data-chart="ratings"' in anyone.get("/admin", headers=signed).text


def test_bad_filters_are_told_in_the_callers_language(open_app: FastAPI) -> None:
    client = operator(open_app)
    bad_date = client.get("/api/admin/stats?since=2026-13-01", headers={"Accept-Language": "zh"})
    assert bad_date.status_code == 400 and "日期" in bad_date.json()["error"]["message"]
    bad_format = client.get("/api/admin/feedback/export?format=xml")
    assert bad_format.status_code == 400 and "sft, dpo" in bad_format.json()["error"]["message"]
    bad_since = client.get("/api/admin/feedback/export?format=sft&since=yesterday")
    assert bad_since.status_code == 400 and "2026-12-31" in bad_since.json()["error"]["message"]
