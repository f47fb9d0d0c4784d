"""A loopback OpenAI-compatible server that fails on purpose, one scripted step per attempt.

Raw asyncio sockets, so it can do what a framework would not: reset before the headers, reset
in the middle of a stream, stall, trickle bytes, or send a malformed SSE line. Each test gets its
own base URL, and the server counts the attempts made on it:

    server = FaultServer().start()
    url = server.url("status:429:0.2", "ok")   # attempt 1 -> 429 Retry-After 0.2, then a reply
    ...; assert server.attempts(url) == 2

Steps (the last one repeats): ``ok[:tokens[:interval_ms]]``, ``status:CODE[:retry_after]``,
``status_ms:CODE:retry_after_ms``, ``ctx:LIMIT``, ``ctx_plain:LIMIT``, ``reset``, ``midreset``, ``malformed``,
``malformed_late``, ``stall``, ``stall_head``, ``trickle``, ``jsonerr``, ``json_reply``, ``eof``, ``eof_empty``, ``burst``, ``done_only``,
``error_event``. Error bodies echo the Authorization header, as careless providers do, so tests
can check that the key never reaches the user.

Run standalone (for the benchmark): ``python tests/fault_server.py --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

REPLY = "Hello from the fault server, one word at a time."


@dataclass
class Seen:
    """What the server saw of one request."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    started: float
    disconnected: float | None = None
    chunks_sent: int = 0


@dataclass
class Stats:
    attempts: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    connections: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultServer:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.stats = Stats()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-server", daemon=True)

    # -- control (from the test thread) ---------------------------------------------------------

    def start(self) -> FaultServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def url(self, *steps: str) -> str:
        """A fresh base URL (``.../v1``) whose attempts follow ``steps``."""
        return f"http://127.0.0.1:{self.port}/t/{uuid.uuid4().hex[:12]}/{','.join(steps or ('ok',))}/v1"

    def _token(self, url: str) -> str:
        return url.split("/t/", 1)[1].split("/", 1)[0]

    def attempts(self, url: str) -> int:
        return len(self.stats.attempts.get(self._token(url), []))

    def seen(self, url: str) -> list[Seen]:
        return list(self.stats.attempts.get(self._token(url), []))

    # -- protocol -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            while True:  # keep-alive: several requests per connection
                request = await _read_request(reader)
                if request is None:
                    return
                path, headers, body = request
                keep = await self._respond(path, headers, body, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _respond(
        self, path: str, headers: dict[str, str], body: dict[str, Any], reader: asyncio.StreamReader, writer
    ) -> bool:
        if path.endswith("/models"):
            await _send_json(writer, 200, {"object": "list", "data": [{"id": "fault", "object": "model"}]})
            return True
        parts = path.split("/")
        if len(parts) < 5 or parts[1] != "t":
            await _send_json(writer, 404, {"error": {"message": "unknown path", "type": "not_found"}})
            return True
        token, steps = parts[2], parts[3].split(",")
        seen = Seen(path, headers, body, time.monotonic())
        self.stats.attempts[token].append(seen)
        step = steps[min(len(self.stats.attempts[token]), len(steps)) - 1]
        name, *args = step.split(":")
        # The step runs until it ends or the client goes away (Stop, a timeout), whichever is first.
        work = asyncio.ensure_future(self._step(name, args, headers, body, writer, seen))
        watcher = asyncio.ensure_future(_watch_disconnect(reader, seen))
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        work.cancel()
        watcher.cancel()  # the reader must be free again before the next request on this connection
        keep, _ = await asyncio.gather(work, watcher, return_exceptions=True)
        return keep if isinstance(keep, bool) else False

    async def _step(self, name: str, args: list[str], headers, body, writer, seen: Seen) -> bool:  # noqa: ANN001, C901
        echo = headers.get("authorization", "")
        if name == "ok":
            tokens = int(args[0]) if args else 0
            interval = float(args[1]) / 1000 if len(args) > 1 else 0.0
            await _stream_reply(writer, seen, body, tokens=tokens, interval=interval)
            return True
        if name in ("status", "status_ms"):
            code = int(args[0])
            extra = {}
            if len(args) > 1:
                extra["retry-after-ms" if name == "status_ms" else "retry-after"] = args[1]
            kinds = {401: "invalid_api_key", 429: "rate_limit_exceeded", 400: "invalid_request_error"}
            error = {
                "message": f"Request failed for {echo}: Incorrect API key provided or server busy",
                "type": "server_error" if code >= 500 else "invalid_request_error",
                "code": kinds.get(code),
            }
            await _send_json(writer, code, {"error": error}, extra)
            return True
        if name == "ctx":
            limit = int(args[0])
            prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4 + 8
            completion = int(body.get("max_tokens") or 16)
            if prompt + completion > limit:
                message = (
                    f"This model's maximum context length is {limit} tokens. However, you requested "
                    f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
                    f"Please reduce the length of the messages or completion. (key {echo})"
                )
                error = {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
                await _send_json(writer, 400, {"error": error})
                return True
            await _stream_reply(writer, seen, body)
            return True
        if name == "ctx_plain":  # a context error without figures, as some providers word it
            limit = int(args[0])
            prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4 + 8
            if prompt + int(body.get("max_tokens") or 16) > limit:
                error = {"message": f"Prompt is too long ({echo})", "type": "invalid_request_error"}
                await _send_json(writer, 400, {"error": error})
                return True
            await _stream_reply(writer, seen, body)
            return True
        if name == "reset":
            _reset(writer)
            return False
        if name == "midreset":
            await _start_stream(writer)
            for word in REPLY.split()[:3]:
                await _event(writer, seen, _delta(word + " "))
            _reset(writer)
            return False
        if name in ("malformed", "malformed_late"):
            await _start_stream(writer)
            await _event(writer, seen, _delta("", role=True))
            if name == "malformed_late":
                await _event(writer, seen, _delta("Partial "))
            await _chunk(writer, b'data: {"choices": [{"delta": {"content": tru\n\n')
            await _chunk(writer, b"data: [DONE]\n\n")
            await _chunk(writer, b"")
            return True
        if name == "stall":
            await _start_stream(writer)
            await _event(writer, seen, _delta("", role=True))
            await asyncio.sleep(3600)
            return False
        if name == "stall_head":
            await asyncio.sleep(3600)
            return False
        if name == "trickle":
            await _start_stream(writer)
            while True:  # one byte at a time, never a whole event: defeats a read timeout
                await _chunk(writer, b":")
                await asyncio.sleep(0.2)
        if name == "jsonerr":
            error = {"message": f"upstream exploded, key was {echo}", "type": "server_error"}
            await _send_json(writer, 200, {"error": error})
            return True
        if name == "json_reply":  # a server that ignores "stream": true
            message = {"role": "assistant", "content": REPLY}
            usage = {"prompt_tokens": 11, "completion_tokens": 10, "total_tokens": 21}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            await _send_json(writer, 200, {"choices": [choice], "usage": usage})
            return True
        if name == "eof":
            await _start_stream(writer)
            for word in REPLY.split()[:3]:
                await _event(writer, seen, _delta(word + " "))
            await _chunk(writer, b"")  # clean end of body: no finish_reason, no [DONE]
            return True
        if name == "eof_empty":
            await _start_stream(writer)
            await _chunk(writer, b"")  # what llama_cpp.server does on a streamed overflow
            return True
        if name == "burst":  # a whole reply in one write, and no usage chunk
            await _start_stream(writer)
            events = [
                _delta("", role=True),
                *(_delta(w + " ") for w in REPLY.split()),
                _delta("", finish="stop"),
            ]
            body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
            await _chunk(writer, body + b"data: [DONE]\n\n")
            await _chunk(writer, b"")
            return True
        if name == "done_only":
            await _start_stream(writer)
            await _event(writer, seen, _delta("Cut "))
            await _chunk(writer, b"data: [DONE]\n\n")
            await _chunk(writer, b"")
            return True
        if name == "error_event":
            await _start_stream(writer)
            await _event(writer, seen, _delta("Partial "))
            payload = {"error": {"message": f"overloaded ({echo})", "type": "server_error"}}
            await _chunk(writer, b"data: " + json.dumps(payload).encode() + b"\n\n")
            await _chunk(writer, b"")
            return True
        await _send_json(writer, 500, {"error": {"message": f"unknown step {name}", "type": "test_error"}})
        return True


# -- wire helpers ----------------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], dict[str, Any]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    _, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    raw = await reader.readexactly(length) if length else b""
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    return path, headers, body


async def _watch_disconnect(reader: asyncio.StreamReader, seen: Seen) -> None:
    """Return (and note the time) when the client closes or resets the connection."""
    try:
        while await reader.read(1024):
            pass
    except ConnectionError:
        pass
    seen.disconnected = time.monotonic()


async def _send_json(writer, status: int, obj: dict[str, Any], extra: dict[str, str] | None = None) -> None:  # noqa: ANN001
    data = json.dumps(obj).encode()
    head = [f"HTTP/1.1 {status} X", "content-type: application/json", f"content-length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    await writer.drain()


async def _start_stream(writer) -> None:  # noqa: ANN001
    head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()


async def _chunk(writer, data: bytes) -> None:  # noqa: ANN001
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def _delta(text: str, *, role: bool = False, finish: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    if text or not role:
        delta["content"] = text
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "model": "fault",
        "choices": [{"index": 0, "delta": delta if finish is None else {}, "finish_reason": finish}],
    }


async def _event(writer, seen: Seen, obj: dict[str, Any]) -> None:  # noqa: ANN001
    await _chunk(writer, b"data: " + json.dumps(obj).encode() + b"\n\n")
    seen.chunks_sent += 1


async def _stream_reply(
    writer, seen: Seen, body: dict[str, Any], *, tokens: int = 0, interval: float = 0.0
) -> None:  # noqa: ANN001
    words = [w + " " for w in REPLY.split()] if not tokens else [f"t{i} " for i in range(tokens)]
    await _start_stream(writer)
    await _event(writer, seen, _delta("", role=True))
    for word in words:
        if interval:
            await asyncio.sleep(interval)
        await _event(writer, seen, _delta(word))
    await _event(writer, seen, _delta("", finish="stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
        await _chunk(writer, b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
    await _chunk(writer, b"data: [DONE]\n\n")
    await _chunk(writer, b"")


def _reset(writer) -> None:  # noqa: ANN001
    """Close with a TCP RST (SO_LINGER 0), not a polite FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = FaultServer(args.port).start()
    print(f"ready {server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
