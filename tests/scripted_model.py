"""A scripted OpenAI-compatible model on loopback, for the tool loop's tests.

Scripted, not a real model, because the loop's behaviour must not hang on a model's judgement:
the embedded SmolLM2 does not call tools reliably (docs/tools.md), and the tests need a model that
calls exactly the tool it is told to, with exactly those arguments, and then quotes the result.
It speaks the real wire format (streamed ``tool_calls`` deltas as OpenAI sends them, or a JSON
body), so the app's cloud backend is tested as it runs against a provider.

The newest user message steers it: ``call NAME {json}`` (repeatable: parallel calls) makes it ask
for those calls while ``tool_choice`` allows; once tool results follow that message it answers
``Tool said: <the last result>``. ``always call`` makes it call again after every result (a loop
that would not end, unless ``tool_choice`` is ``none``). Every request body is kept in ``seen``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CALL = re.compile(r"call (\S+) (\{.*?\})(?=\s+call |\s*$)", re.S)


class ScriptedModel:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                model.seen.append(body)
                model._answer(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        calls, text = plan(body)
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            reply = {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            }
            data = json.dumps(reply).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        chunks: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if text:
            chunks += [{"content": text[: len(text) // 2]}, {"content": text[len(text) // 2 :]}]
        for index, call in enumerate(
            calls
        ):  # as OpenAI streams them: id and name, then the arguments in pieces
            args = call["function"]["arguments"]
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            chunks += [{"tool_calls": [head]}]
            chunks += [
                {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                for part in (args[:5], args[5:])
                if part
            ]
        events = [{"choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in chunks]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        events.append({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
        for event in events:
            handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()


def plan(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The calls to ask for and the text to say, for one request."""
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    asked = messages[last_user]["content"]
    results = [m for m in messages[last_user:] if m["role"] == "tool"]
    wanted = [
        {"id": f"call_{len(results)}_{n}", "type": "function", "function": {"name": name, "arguments": args}}
        for n, (name, args) in enumerate(_CALL.findall(asked))
    ]
    may_call = body.get("tools") and body.get("tool_choice") != "none"
    if may_call and wanted and (not results or "always call" in asked):
        return wanted, ""
    if results:
        return [], f"Tool said: {results[-1]['content'][:300]}"
    return [], "No tool was needed."
