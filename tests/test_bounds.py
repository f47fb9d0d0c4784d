"""Bounded everything (issue 9, point 3): metric labels, log fields, /ws connections, JSON bodies.

Client input must not become a metric series or a raw log line, one client must not hold every
WebSocket, and a body's fate must not depend on the interpreter's recursion limit. Served on
loopback with a scripted backend: the model is not what these tests are about.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest
from guard_fakes import ScriptedBackend
from service_support import metric, scrape, serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from chat import ChatEngine, Message
from chat.backends.base import Backend, Chunk, Finish
from chat.service.bodies import MAX_DEPTH, parse_json
from chat.service.door.access_log import MAX_FIELD, MAX_TEXT, AccessLog
from chat.service.errors import ApiError


class Slow(Backend):
    """Three chunks, a fifth of a second apart: a reply that outlasts a short idle timeout."""

    name = model = "slow"

    def stream(self, messages, params, *, cancel=None, api_key=None) -> Iterator[Chunk]:  # noqa: ANN001
        for text in ("one ", "two ", "three"):
            time.sleep(0.2)
            yield text
        yield Finish("stop")

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return 8


@pytest.fixture
def access_lines() -> Iterator[list[str]]:
    """Request-log lines written while the test runs."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Capture()
    logger = logging.getLogger("chat.access")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


# --- metric labels and log fields -----------------------------------------------------------------


def test_junk_backend_names_do_not_grow_metrics_or_reach_the_log(access_lines: list[str]) -> None:
    engine = ChatEngine({"scripted": ScriptedBackend(["ok"])})
    with serve(engine, full=False, log_format="json") as base, httpx.Client(timeout=30) as client:

        def junk(i: int) -> httpx.Response:
            body = {"user_input": "Hi", "context": {"backend": f"junk-{i}-" + "x" * 2000}}
            return client.post(base + "api/chat", json=body)

        assert junk(0).status_code == 400  # the first one creates the "unknown" series
        before = scrape(base)
        assert all(junk(i).status_code == 400 for i in range(1, 30))
        after = scrape(base)
    assert len(after) - len(before) < 200  # counts went up; no series was added (was ~9 KB each)
    assert "junk" not in after
    assert metric(after, "chat_requests_total", entry="rest", backend="unknown", outcome="error") == 30
    lines = [json.loads(line) for line in access_lines if line.startswith("{")]
    assert len(lines) == 30
    assert {line["backend"] for line in lines} == {"unknown"}
    assert "junk" not in "".join(access_lines)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_escape_control_characters_and_bound_fields(fmt: str, access_lines: list[str]) -> None:
    forged = "hi\nrequest request_id=forged status=200 \x1b[2J\u202eevil\u2028\x85"
    AccessLog(fmt=fmt, user_text=True).write(
        {"request_id": "r1", "client": "c" * 5000, "user_input": forged, "reply": "y" * 50_000}
    )
    (line,) = access_lines
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line and "\u2028" not in line
    assert "\x85" not in line
    assert "\\u001b" in line and "\\u202e" in line
    assert len(line) < MAX_FIELD + MAX_TEXT + 500
    if fmt == "json":
        data = json.loads(line)
        assert data["user_input"] == forged  # escaped in the line, exact when decoded
        assert data["client"].startswith("c" * MAX_FIELD) and data["client"].endswith("[4800 more]")
    else:
        assert line.startswith("request request_id=r1 ")
        assert 'user_input="hi\\nrequest request_id=forged status=200 \\u001b[2J' in line  # one quoted value


# --- /ws connections ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_app() -> Iterator[str]:
    engine = ChatEngine({"slow": Slow()})
    with serve(engine, full=False, max_ws_per_client=2, ws_idle_timeout=0.5) as base:
        yield base.replace("http://", "ws://") + "ws"


def test_websockets_per_client_are_capped_with_a_clear_close(ws_app: str) -> None:
    with connect(ws_app), connect(ws_app):
        with connect(ws_app) as third, pytest.raises(ConnectionClosed) as info:
            third.recv(timeout=5)
        assert info.value.rcvd.code == 1013
        assert info.value.rcvd.reason == "too many connections: at most 2 per client"
    assert reset_answered(ws_app)  # closing gave the slots back


def reset_answered(url: str, attempts: int = 50) -> bool:
    """A new connection works (retried while the server notices the closed ones)."""
    for _ in range(attempts):
        try:
            with connect(url) as ws:
                ws.send(json.dumps({"type": "reset"}))
                return json.loads(ws.recv(timeout=5)) == {"type": "reset"}
        except ConnectionClosed:
            time.sleep(0.05)
    return False


def test_idle_websockets_close_but_a_streaming_reply_is_not_idle(ws_app: str) -> None:
    with connect(ws_app) as ws:
        ws.send(json.dumps({"user_input": "Count."}))  # 0.6 s of reply: longer than the timeout
        events = []
        while (event := json.loads(ws.recv(timeout=10)))["type"] != "done":
            events.append(event["type"])
        assert event["reply"] == "one two three" and events.count("delta") == 3
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == 1000
    assert info.value.rcvd.reason == "idle timeout: no message for 0.5 s"


# --- JSON bodies ----------------------------------------------------------------------------------


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def verdict(raw: bytes) -> str:
    try:
        parse_json(raw)
    except ApiError as exc:
        return exc.message
    return "ok"


def test_json_bodies_get_the_same_answer_whatever_the_recursion_limit() -> None:
    bodies = [deep_array(1500), deep_object(1500), deep_object(MAX_DEPTH + 1), deep_object(40)]
    usual = [verdict(raw) for raw in bodies]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 80)  # a stack nearly spent, as in a deep server
    try:
        tight = [verdict(raw) for raw in bodies]
    finally:
        sys.setrecursionlimit(limit)
    assert usual == tight
    assert usual == [
        "the request body must be a JSON object, got array",
        f"the request body is nested too deeply: at most {MAX_DEPTH} levels",
        f"the request body is nested too deeply: at most {MAX_DEPTH} levels",
        "ok",
    ]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    raw = json.dumps({"text": "[" * 500 + "{" * 500, "quote": 'a "[[[" b'}).encode()
    assert parse_json(raw)["text"].startswith("[[[")
