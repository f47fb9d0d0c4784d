"""``WebSocket /ws``: one conversation per connection, its history kept by the server.

With the store on, the conversation is kept in the caller's stored conversations:
``/ws?conversation_id=<id>`` resumes one (an id that is not the caller's gets an ``error`` frame
with status 404 and the connection closes), without it the first message starts a new one, and
``reset`` starts another. Each reply's ``done`` (or ``error``) frame carries its ``conversation_id``.

Client -> server (JSON text frames):
    {"user_input": "Hi", "context": {"system_prompt": "...", "temperature": 0.2}}
    {"type": "cancel"}   stop the reply being streamed
    {"type": "reset"}    forget the history
``context`` values stick for the rest of the connection until changed; ``"knowledge": "shop"``
answers from that knowledge base, and each ``done`` frame lists the ``sources`` it was given.

Server -> client: ``{"type": "waiting" | "notice" | "delta" | "thinking", ...}`` while a reply
streams (``thinking``: a reasoning model's thinking, apart from the reply), then
``{"type": "done", "reply": ..., "reasoning": ..., <stats>}``, or ``{"type": "error", "status":
4xx/5xx, "error": {...}}``. A filtered message gets ``done`` with the refusal (``"blocked": true``); bad
JSON, wrong types and over-long frames get an ``error``: the connection stays open for the next.

The door checks access before the handshake; each message counts against the rate limit. One
client may hold ``CHAT_MAX_WS_PER_CLIENT`` connections (more are closed with code 1013), and a
connection silent for ``CHAT_WS_IDLE_TIMEOUT`` seconds is closed (code 1000); the close reason
says which.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from dataclasses import replace
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import FastAPI
from starlette.websockets import WebSocket, WebSocketState

from chat.i18n import t
from chat.messages import Message
from chat.reply.turn import Reply
from chat.service.bodies import (
    PARAM_KEYS,
    invalid_field,
    object_field,
    parse_json,
    reject_unknown,
    text_field,
    too_large,
)
from chat.service.conversations import frame_key, open_turn
from chat.service.errors import ApiError
from chat.service.replies import ReplyRun, asked_language, dumps, frame
from chat.service.rest import check_knowledge, parse_context
from chat.service.shared import Service

FRAME_KEYS = ("type", "user_input", "context", "idempotency_key")
CONTEXT_KEYS = ("system_prompt", "backend", "knowledge", *PARAM_KEYS)
KEPT_FINISHES = ("stop", "length")  # replies that join the history
IDLE_CLOSE = 1000  # normal closure: the client was idle, nothing went wrong
TRY_AGAIN_LATER = 1013
POLICY_VIOLATION = 1008  # a conversation_id that is not the caller's


class _Gone(Exception):
    """The client closed the connection."""


class ClientSlots:
    """Open ``/ws`` connections per client, at most ``cap`` each (one event loop: no lock)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: Counter[str] = Counter()

    def take(self, client: str) -> bool:
        if self._open[client] >= self.cap:
            return False
        self._open[client] += 1
        return True

    def give_back(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


def register(app: FastAPI, service: Service) -> None:
    slots = ClientSlots(service.settings.max_ws_per_client)

    @app.websocket("/ws")
    async def ws_chat(websocket: WebSocket) -> None:
        record = service.record("ws", websocket)
        client = record.client
        await websocket.accept()
        if not slots.take(client):
            service.tracker.reject(record, "too_many_connections", 429)
            reason = t("ws.too_many", asked_language(websocket), cap=slots.cap)
            await websocket.close(TRY_AGAIN_LATER, reason)
            return
        try:
            conversation = Conversation(service, websocket)
            if await conversation.resume(websocket.query_params.get("conversation_id", "")):
                await conversation.run()
        finally:
            slots.give_back(client)


class Conversation:
    def __init__(self, service: Service, websocket: WebSocket) -> None:
        self.service = service
        self.ws = websocket
        self.history: list[Message] = []  # with the store off; else the store keeps it
        self.conversation_id = ""  # with the store on: the stored conversation, once there is one
        self.context: dict[str, Any] = {}
        self.cancel: threading.Event | None = None  # the reply being streamed, if any
        self.idle_timeout = service.settings.ws_idle_timeout
        self._idle_deadline = anyio.current_time() + self.idle_timeout
        self._busy = False

    async def resume(self, conversation_id: str) -> bool:
        """Continue the caller's stored conversation ``conversation_id``; False (the client was
        told why and the connection closed) when it is not theirs, or nothing is stored."""
        if not conversation_id:
            return True
        record = self.service.record("ws", self.ws)
        try:
            await open_turn(self.service, self.ws, conversation_id)
        except ApiError as exc:
            self.service.tracker.reject(record, exc.kind, exc.status)
            body = exc.body(record.id, asked_language(self.ws))
            with contextlib.suppress(_Gone):
                await self._send({"type": "error", "id": record.id, "status": exc.status, **body})
            with contextlib.suppress(Exception):  # the client may already be gone
                await self.ws.close(POLICY_VIOLATION, exc.kind)
            return False
        self.conversation_id = conversation_id
        return True

    async def run(self) -> None:
        inbox_in, inbox = anyio.create_memory_object_stream[dict[str, Any] | ApiError](16)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._read, inbox_in)
            tasks.start_soon(self._close_when_idle, tasks.cancel_scope)
            async with inbox:
                async for frame_ in inbox:
                    self._busy = True
                    try:
                        await self._turn(frame_)
                    except _Gone:
                        break
                    finally:
                        self._busy = False
                        self._touch()
            tasks.cancel_scope.cancel()

    def _touch(self) -> None:
        self._idle_deadline = anyio.current_time() + self.idle_timeout

    async def _close_when_idle(self, scope: anyio.CancelScope) -> None:
        """Close the connection once it has been silent (no message, no reply) for the timeout."""
        while True:
            wait = self._idle_deadline - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
            elif self._busy:  # a reply is streaming: that is not idle
                self._touch()
            else:
                break
        reason = t("ws.idle", asked_language(self.ws), seconds=f"{self.idle_timeout:g}")
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):  # the client may go away at the same moment
                await self.ws.close(IDLE_CLOSE, reason)
        scope.cancel()

    async def _read(self, inbox: MemoryObjectSendStream[dict[str, Any] | ApiError]) -> None:
        """Receive frames; ``cancel`` acts at once, the rest wait their turn in ``inbox``."""
        async with inbox:
            while True:
                message = await self.ws.receive()
                self._touch()
                if message["type"] == "websocket.disconnect":
                    if self.cancel is not None:
                        self.cancel.set()
                    return
                parsed = self._parse_frame(message)
                if isinstance(parsed, dict) and parsed.get("type") == "cancel":
                    if self.cancel is not None:
                        self.cancel.set()
                    continue
                await inbox.send(parsed)

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

    async def _turn(self, frame_: dict[str, Any] | ApiError) -> None:
        service = self.service
        record = service.record("ws", self.ws)
        try:
            if isinstance(frame_, ApiError):
                raise frame_
            reject_unknown(frame_, FRAME_KEYS, "api.where_message")
            kind = text_field(frame_, "type", "") or "message"
            if kind == "reset":
                self.history.clear()
                self.conversation_id = ""  # the next message starts a new stored conversation
                await self._send({"type": "reset"})
                return
            if kind != "message":
                raise invalid_field("api.ws_type", kind=repr(kind))
            user_input = text_field(frame_, "user_input", "", required=True)
            context = object_field(frame_, "context")
            if "history" in context:
                raise invalid_field("api.ws_history")
            reject_unknown(context, CONTEXT_KEYS, "context")
            chat = parse_context(
                {**self.context, **context}, user_input, service.defaults, history=self.history
            )
            await check_knowledge(service, chat.knowledge)  # a bad name never sticks
            service.door.admit_message(record.client, chat.lang)  # each message starts a reply
            turn = await open_turn(service, self.ws, self.conversation_id, key=frame_key(frame_))
            if turn is not None:
                self.conversation_id = turn[0].id
                chat = replace(chat, messages=[*chat.messages[:-1], *turn[1], chat.messages[-1]])
                chat = replace(chat, conversation=turn[0])
        except ApiError as exc:
            service.tracker.reject(record, exc.kind, exc.status)
            text = frame_.get("user_input") if isinstance(frame_, dict) else None
            body = exc.body(record.id, asked_language(self.ws, text))
            await self._send({"type": "error", "id": record.id, "status": exc.status, **body})
            return
        self.context.update(context)

        run = ReplyRun(service, record, chat)
        self.cancel = run.cancel
        try:
            async for step in run:
                name, data = frame(step, record, chat.lang)
                if name in ("done", "error") and chat.conversation is not None:
                    data["conversation_id"] = chat.conversation.id
                await self._send({"type": name, **data})
                if chat.conversation is not None:
                    continue  # the store keeps the history
                if isinstance(step, Reply) and step.stats.finish_reason in KEPT_FINISHES:
                    self.history += [chat.messages[-1], Message("assistant", step.text)]
        finally:
            self.cancel = None
            await run.aclose()
