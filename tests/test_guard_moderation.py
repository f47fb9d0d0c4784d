"""The optional external moderation client: verdicts, bounded retries, failing closed.

A real loopback HTTP server stands in for the moderation API in one test; the rest use
``httpx.MockTransport`` to script exact status codes and bodies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from chat import ChatEngine, GenerationParams, InputBlocked, Settings
from chat.guards import ContentBlocked, ContentGuard, build_guard
from chat.guards.moderation import ModerationClient, ModerationUnavailable
from chat.messages import Message

SECRET_KEY = "sk-test-moderation-key-000000000000"


def scripted(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def verdict(flagged: bool) -> httpx.Response:
    return httpx.Response(200, json={"id": "m", "results": [{"flagged": flagged, "categories": {}}]})


def client(transport: httpx.MockTransport, **kw: object) -> ModerationClient:
    return ModerationClient(
        "https://mod.example/v1", api_key=SECRET_KEY, transport=transport, sleep=lambda s: None, **kw
    )


def test_verdicts_and_request_shape() -> None:
    transport, seen = scripted(verdict(True))
    assert client(transport, model="omni-moderation-latest").flagged("some text") is True
    request = seen[0]
    assert str(request.url) == "https://mod.example/v1/moderations"
    assert json.loads(request.content) == {"input": "some text", "model": "omni-moderation-latest"}
    assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"
    transport, _ = scripted(verdict(False))
    assert client(transport).flagged("fine") is False


def test_transient_failures_are_retried_then_answered() -> None:
    transport, seen = scripted(
        httpx.Response(503), httpx.ConnectError("refused"), httpx.Response(429), verdict(False)
    )
    assert client(transport, attempts=4).flagged("x") is False
    assert len(seen) == 4


@pytest.mark.parametrize(
    "response",
    [httpx.Response(500), httpx.ConnectError("refused"), httpx.ReadTimeout("slow")],
)
def test_retries_are_bounded_then_it_fails_closed(response: httpx.Response | Exception) -> None:
    transport, seen = scripted(response)
    with pytest.raises(ModerationUnavailable) as info:
        client(transport, attempts=3).flagged("x")
    assert len(seen) == 3
    assert SECRET_KEY not in str(info.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(401, json={"error": {"message": f"bad key {SECRET_KEY}"}}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"results": []}),
        httpx.Response(200, json={"results": [{"no_flag": True}]}),
    ],
)
def test_client_errors_and_malformed_answers_fail_closed_without_retry(response: httpx.Response) -> None:
    transport, seen = scripted(response)
    with pytest.raises(ModerationUnavailable) as info:
        client(transport, attempts=3).flagged("x")
    assert len(seen) == 1
    assert SECRET_KEY not in str(info.value)


def test_input_guard_fails_closed_with_its_own_message() -> None:
    transport, _ = scripted(httpx.Response(502))
    guard = ContentGuard(moderation=client(transport))
    with pytest.raises(ContentBlocked) as info:
        guard.check([Message("user", "What time do you open?")])
    assert info.value.key == "error.moderation_unavailable"
    assert "审核" in info.value.user_message("zh")
    assert isinstance(info.value, InputBlocked)  # so the engine counts it as blocked


def test_input_flagged_by_moderation_is_refused() -> None:
    transport, _ = scripted(verdict(True))
    with pytest.raises(InputBlocked):
        ContentGuard(moderation=client(transport)).check([Message("user", "anything")])


@pytest.fixture
def moderation_server() -> Iterator[tuple[str, list[str]]]:
    """A real moderation API on loopback: flags any input that mentions "dragon"."""
    inputs: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            inputs.append(body["input"])
            answer = json.dumps({"results": [{"flagged": "dragon" in body["input"].lower()}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", inputs
    server.shutdown()
    server.server_close()


def test_settings_turn_moderation_on_over_real_http(moderation_server: tuple[str, list[str]]) -> None:
    url, inputs = moderation_server
    guard = build_guard(Settings(moderation_url=url))
    guard.check([Message("user", "What time do you open?")])
    with pytest.raises(InputBlocked):
        guard.check([Message("user", "Tell me about the dragon")])
    assert inputs == ["What time do you open?", "Tell me about the dragon"]
    assert build_guard(Settings()).moderation is None  # off by default


def test_the_ui_validator_does_not_call_the_moderation_service_twice(local_backend) -> None:
    """The validator checks local rules only; the engine moderates once when the message is sent."""
    from chat.ui import ChatHandlers

    calls: list[str] = []

    class CountingModeration:
        def flagged(self, text: str) -> bool:
            calls.append(text)
            return False

    guard = build_guard(Settings())
    guard.moderation = CountingModeration()
    engine = ChatEngine({"local": local_backend}, input_guard=guard, output_guard=None)
    handlers = ChatHandlers(engine)
    assert handlers.validate("Hello there")["is_valid"] is True
    assert calls == []
    engine.reply([{"role": "user", "content": "Hello there"}], GenerationParams(max_new_tokens=4))
    assert calls == ["Hello there"]
