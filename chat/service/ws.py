"""``WebSocket /ws``: one conversation per connection, its history kept by the server.

Client -> server (JSON text frames):
    {"user_input": "Hi", "context": {"system_prompt": "...", "temperature": 0.2}}
    {"type": "cancel"}   stop the reply being streamed
    {"type": "reset"}    forget the history
``context`` values stick for the rest of the connection until changed.

Server -> client: ``{"type": "waiting" | "notice" | "delta", ...}`` while a reply streams, then
``{"type": "done", "reply": ..., <stats>}``, or ``{"type": "error", "status": 4xx/5xx,
"error": {...}}``. A filtered message gets ``done`` with the refusal (``"blocked": true``); bad
JSON, wrong types and over-long frames get an ``error``: the connection stays open for the next.
With ``CHAT_API_TOKEN`` set, send ``Authorization: Bearer <token>`` (or ``?token=`` where a
client cannot set headers).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import FastAPI
from starlette.websockets import WebSocket, WebSocketState

from chat.errors import ChatError, InputBlocked, OutputBlocked
from chat.messages import Done, Message, Notice
from chat.service.bodies import PARAM_KEYS, object_field, parse_json, reject_unknown, text_field, too_large
from chat.service.core import Service
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import dumps, event_fields, refusal_body, reply_body
from chat.service.rest import parse_context

FRAME_KEYS = ("type", "user_input", "context")
CONTEXT_KEYS = ("system_prompt", "backend", *PARAM_KEYS)
KEPT_FINISHES = ("stop", "length")  # replies that join the history
POLICY_VIOLATION = 1008


class _Gone(Exception):
    """The client closed the connection."""


def register(app: FastAPI, service: Service) -> None:
    @app.websocket("/ws")
    async def ws_chat(websocket: WebSocket) -> None:
        try:
            service.check_token(websocket, allow_query=True)
        except ApiError as exc:
            service.tracker.reject(service.record("ws", websocket), exc.kind, exc.status)
            if "websocket.http.response" in websocket.scope.get("extensions", {}):
                await websocket.send_denial_response(exc.response())
            else:
                await websocket.close(POLICY_VIOLATION, "a valid API token is required")
            return
        await websocket.accept()
        await Conversation(service, websocket).run()


class Conversation:
    def __init__(self, service: Service, websocket: WebSocket) -> None:
        self.service = service
        self.ws = websocket
        self.history: list[Message] = []
        self.context: dict[str, Any] = {}
        self.cancel: threading.Event | None = None  # the reply being streamed, if any

    async def run(self) -> None:
        inbox_in, inbox = anyio.create_memory_object_stream[dict[str, Any] | ApiError](16)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._read, inbox_in)
            async with inbox:
                async for frame in inbox:
                    try:
                        await self._turn(frame)
                    except _Gone:
                        break
            tasks.cancel_scope.cancel()

    async def _read(self, inbox: MemoryObjectSendStream[dict[str, Any] | ApiError]) -> None:
        """Receive frames; ``cancel`` acts at once, the rest wait their turn in ``inbox``."""
        async with inbox:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    if self.cancel is not None:
                        self.cancel.set()
                    return
                frame = self._parse_frame(message)
                if isinstance(frame, dict) and frame.get("type") == "cancel":
                    if self.cancel is not None:
                        self.cancel.set()
                    continue
                await inbox.send(frame)

    def _parse_frame(self, message: dict[str, Any]) -> dict[str, Any] | ApiError:
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > self.service.max_body:
            return too_large(self.service.max_body)
        try:
            return parse_json(raw)
        except ApiError as exc:
            return exc

    async def _send(self, data: dict[str, Any]) -> None:
        if self.ws.application_state != WebSocketState.CONNECTED:
            raise _Gone
        try:
            await self.ws.send_text(dumps(data))
        except Exception:  # noqa: BLE001 - every way a send fails means the client is gone
            raise _Gone from None

    async def _turn(self, frame: dict[str, Any] | ApiError) -> None:
        service = self.service
        record = service.record("ws", self.ws)
        try:
            if isinstance(frame, ApiError):
                raise frame
            reject_unknown(frame, FRAME_KEYS, "the message")
            kind = text_field(frame, "type", "") or "message"
            if kind == "reset":
                self.history.clear()
                await self._send({"type": "reset"})
                return
            if kind != "message":
                raise ApiError(
                    400, "invalid_request", f"unknown message type {kind!r}: use message, cancel or reset"
                )
            user_input = text_field(frame, "user_input", "", required=True)
            context = object_field(frame, "context")
            if "history" in context:
                raise ApiError(
                    400,
                    "invalid_request",
                    'the server keeps the history of a /ws conversation; send {"type": "reset"} to clear it',
                )
            reject_unknown(context, CONTEXT_KEYS, "context")
            chat = parse_context(
                {**self.context, **context}, user_input, service.defaults, history=self.history
            )
            service.check_rate(record.client)
        except ApiError as exc:
            service.tracker.reject(record, exc.kind, exc.status)
            await self._send({"type": "error", "id": record.id, "status": exc.status, **exc.body(record.id)})
            return
        self.context.update(context)

        pump = service.pump(record, chat.messages, chat.params, backend=chat.backend)
        self.cancel = pump.cancel
        status = 200
        notices: list[Notice] = []
        try:
            async for event in pump:
                if isinstance(event, Done):
                    await self._send({"type": "done", **reply_body(event, notices, record)})
                    if event.stats.finish_reason in KEPT_FINISHES:
                        self.history += [chat.messages[-1], Message("assistant", event.text)]
                    continue
                if isinstance(event, Notice):
                    notices.append(event)
                name, data = event_fields(event)
                await self._send({"type": name, **data})
        except (InputBlocked, OutputBlocked) as exc:
            await self._send({"type": "done", **refusal_body(exc, chat.lang, record)})
        except ChatError as exc:
            error = from_chat_error(exc, chat.lang)
            status = error.status
            await self._send({"type": "error", "id": record.id, "status": status, **error.body(record.id)})
        finally:
            self.cancel = None
            await pump.aclose()
            service.tracker.finish(record, status)
