"""Bearer-token auth, per-client rate limiting, malformed and oversized bodies, readiness.

Clients are told apart by address; the app trusts ``X-Forwarded-For`` from loopback only because
``trusted_proxies`` says so (as it would for nginx), so one test process can act as several visitors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from service_support import metric, scrape, serve, service_engine
from support import free_port
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from chat import ChatEngine
from chat.backends.base import Backend

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RATE = 3
MAX_BODY = 4096


@pytest.fixture(scope="module")
def guarded(local_backend) -> Iterator[str]:
    with serve(
        service_engine(local_backend),
        api_token=TOKEN,
        rate_limit=RATE,
        max_body_bytes=MAX_BODY,
        trusted_proxies=("127.0.0.1",),
    ) as url:
        yield url


@pytest.fixture(scope="module")
def open_app(local_backend) -> Iterator[str]:
    with serve(service_engine(local_backend), full=False, max_body_bytes=MAX_BODY) as url:
        yield url


def visitor(n: int) -> dict[str, str]:
    """Headers that make a request come from client 10.0.0.n (through a trusted proxy)."""
    return {**AUTH, "X-Forwarded-For": f"10.0.0.{n}"}


def say_ok() -> dict:
    return {"user_input": "Say ok.", "context": {"max_new_tokens": 4}}


# --- auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "api/chat"), ("POST", "v1/chat/completions"), ("GET", "v1/models"), ("GET", "metrics")],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_api_routes_need_the_token(guarded: str, method: str, path: str, headers: dict) -> None:
    # A fresh client each time: the rate limit counts these too (it throttles token guessing).
    client = {"X-Forwarded-For": f"10.1.{len(path)}.{len(headers.get('Authorization', ''))}"}
    response = httpx.request(method, guarded + path, json={}, headers={**headers, **client})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "unauthorized"


def test_the_token_opens_every_route(guarded: str) -> None:
    assert httpx.post(guarded + "api/chat", json=say_ok(), headers=visitor(1), timeout=60).status_code == 200
    assert httpx.get(guarded + "metrics", headers=AUTH).status_code == 200
    with connect(guarded.replace("http", "ws") + "ws", additional_headers=visitor(1)) as ws:
        ws.send(json.dumps(say_ok()))
        while json.loads(ws.recv(timeout=60))["type"] != "done":
            pass
    with connect(
        guarded.replace("http", "ws") + f"ws?token={TOKEN}",
        additional_headers={"X-Forwarded-For": "10.0.0.2"},
    ):
        pass
    c = openai.OpenAI(
        base_url=guarded + "v1", api_key=TOKEN, max_retries=0, default_headers={"X-Forwarded-For": "10.0.0.3"}
    )
    assert c.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    bad = openai.OpenAI(base_url=guarded + "v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="local", messages=[{"role": "user", "content": "hi"}])


def test_websocket_without_the_token_is_refused(guarded: str) -> None:
    with pytest.raises(InvalidStatus) as info, connect(guarded.replace("http", "ws") + "ws?token=wrong"):
        pass
    assert info.value.response.status_code == 401


def test_health_needs_no_token(guarded: str) -> None:
    assert httpx.get(guarded + "healthz").status_code == 200
    assert httpx.get(guarded + "readyz", headers=visitor(50)).status_code == 200  # follows the policy


# --- rate limiting ---------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_per_client(guarded: str) -> None:
    me, other = visitor(20), visitor(21)
    before = metric(scrape(guarded, **AUTH), "chat_rejected_requests_total", reason="rate_limited")
    for _ in range(RATE):
        assert httpx.post(guarded + "api/chat", json=say_ok(), headers=me, timeout=60).status_code == 200
    refused = httpx.post(guarded + "api/chat", json=say_ok(), headers=me, timeout=60)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limited"
    assert "per minute" in refused.json()["error"]["message"]
    # Every chat entry point draws on the same budget, and other visitors are not affected.
    completions = httpx.post(
        guarded + "v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, headers=me
    )
    assert completions.status_code == 429
    assert httpx.post(guarded + "api/chat", json=say_ok(), headers=other, timeout=60).status_code == 200
    after = metric(scrape(guarded, **AUTH), "chat_rejected_requests_total", reason="rate_limited")
    assert after - before == 2


def test_rate_limit_covers_websocket_messages_without_closing(guarded: str) -> None:
    with connect(guarded.replace("http", "ws") + "ws", additional_headers=visitor(30)) as ws:
        kinds = []
        for _ in range(RATE + 1):
            ws.send(json.dumps(say_ok()))
            while (event := json.loads(ws.recv(timeout=60)))["type"] not in ("done", "error"):
                pass
            kinds.append(event["type"])
        assert kinds == ["done"] * RATE + ["error"]
        assert event["status"] == 429 and event["error"]["type"] == "rate_limited"
        ws.send(json.dumps({"type": "reset"}))  # still connected
        assert json.loads(ws.recv(timeout=10)) == {"type": "reset"}


def test_rate_limit_covers_the_gradio_queue(guarded: str) -> None:
    config = httpx.get(guarded + "config", headers=AUTH).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
    headers = visitor(40)
    statuses = []
    for i in range(RATE + 1):
        joined = httpx.post(
            guarded + "gradio_api/queue/join",
            json={
                "data": ["Say ok.", None, "", 0.7, 2048, 4, 0.95],
                "fn_index": fn_index,
                "session_hash": f"rl{i}",
            },
            headers=headers,
        )
        statuses.append(joined.status_code)
    assert statuses == [200] * RATE + [429]
    assert "per minute" in joined.json()["detail"]  # what Gradio's page shows


# --- malformed and oversized bodies ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["api/chat", "v1/chat/completions"])
@pytest.mark.parametrize(
    ("content", "kind", "fragment"),
    [
        (b"", "invalid_json", "empty"),
        (b"{bad json", "invalid_json", "not valid JSON (line 1, column 2)"),
        (b'"a string"', "invalid_json", "must be a JSON object, got string"),
        (b"[" * 1500 + b"]" * 1500, "invalid_json", "must be a JSON object, got array"),
        (b'{"a":' * 500 + b"1" + b"}" * 500, "invalid_json", "nested too deeply: at most 100 levels"),
        (b"\xff\xfe{}", "invalid_json", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "payload_too_large", "larger than the limit of 4096 bytes"),
    ],
    ids=["empty", "broken", "string", "deep-array", "deep-object", "not-utf8", "oversized"],
)
def test_malformed_bodies_get_a_clear_json_error(
    open_app: str, path: str, content: bytes, kind: str, fragment: str
) -> None:
    response = httpx.post(open_app + path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == (413 if kind == "payload_too_large" else 400)
    error = response.json()["error"]
    assert error["type"] == kind
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"context": {}}, "user_input is required"),
        ({"user_input": ["hi"]}, "user_input must be a string, got array"),
        ({"user_input": "hi", "context": "warm"}, "context must be an object, got string"),
        ({"user_input": "hi", "context": {"temprature": 1}}, "unknown field(s) in context: temprature"),
        ({"user_input": "hi", "context": {"max_new_tokens": 2.5}}, "max_new_tokens must be a whole number"),
        ({"user_input": "hi", "context": {"history": "earlier"}}, "context.history must be a list"),
        (
            {"user_input": "hi", "context": {"history": [{"role": "robot", "content": "x"}]}},
            "role must be one of",
        ),
        ({"user_input": "hi", "context": {"backend": "gpu"}}, "unknown backend 'gpu'"),
        ({"user_input": "hi", "stream": "yes"}, "stream must be true or false, got string"),
        ({"user_input": "   "}, "Please type a message"),
    ],
)
def test_wrong_types_get_a_clear_400(open_app: str, body: dict, fragment: str) -> None:
    response = httpx.post(open_app + "api/chat", json=body, timeout=60)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "messages is required"),
        ({"messages": "hi"}, "messages must be a list"),
        ({"messages": []}, "messages must not be empty"),
        ({"messages": [{"role": "user", "content": 5}]}, "content must be text"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"},
            "max_new_tokens must be a number",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
            "tools[0] must be",
        ),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message must come from the user"),
    ],
)
def test_openai_wrong_types_get_a_clear_400(open_app: str, body: dict, fragment: str) -> None:
    response = httpx.post(open_app + "v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_oversized_body_without_a_length_is_cut_off(open_app: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"user_input": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}'

    response = httpx.post(
        open_app + "api/chat", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"


# --- readiness with a cloud primary ----------------------------------------------------------------


class FakeCloud(Backend):
    """Just enough of a cloud backend for /readyz: a name, a model and a base URL."""

    name = "cloud"
    model = "remote-model"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def stream(self, messages, params, *, cancel=None, api_key=None):  # noqa: ANN001, ANN201
        raise NotImplementedError

    def count_tokens(self, messages) -> int:  # noqa: ANN001
        return 0


class Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b'{"object": "list", "data": []}'
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_readyz_checks_a_primary_cloud_backend(local_backend) -> None:
    api = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        up = ChatEngine(
            {"cloud": FakeCloud(f"http://127.0.0.1:{api.server_port}/v1"), "local": local_backend}
        )
        with serve(up, full=False) as url:
            ready = httpx.get(url + "readyz")
        assert ready.status_code == 200
        assert ready.json()["backends"]["cloud"] == {"model": "remote-model", "primary": True, "ready": True}
    finally:
        api.shutdown()
    down = ChatEngine({"cloud": FakeCloud(f"http://127.0.0.1:{free_port()}/v1"), "local": local_backend})
    with serve(down, full=False) as url:
        not_ready = httpx.get(url + "readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["status"] == "not ready"
    assert "unreachable" in not_ready.json()["backends"]["cloud"]["reason"]


def test_readyz_waits_for_a_model_still_loading(local_backend) -> None:
    from chat.backends.local.loading import PendingBackend

    release = threading.Event()

    def load(progress):  # noqa: ANN001, ANN202
        progress("Downloading model.gguf: 40%")
        release.wait(30)
        return local_backend

    pending = PendingBackend("local", "model.gguf", load, n_ctx=2048)
    with serve(ChatEngine({"local": pending}), full=False) as url:
        loading = httpx.get(url + "readyz")
        assert loading.status_code == 503
        assert loading.json()["backends"]["local"]["reason"] == "Downloading model.gguf: 40%"
        assert httpx.get(url + "healthz").status_code == 200  # alive all the same
        release.set()
        pending.wait(30)
        assert httpx.get(url + "readyz").status_code == 200
