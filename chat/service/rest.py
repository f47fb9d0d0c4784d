"""``POST /api/chat``: one reply as JSON, or as server-sent events with ``"stream": true``.

    {"user_input": "Hi", "conversation_id": "...", "context": {"system_prompt": "...", "temperature": 0.2}}
    -> {"id": ..., "conversation_id": "...", "reply": "...", "backend": "local", ..., "notices": []}

With the store on, each turn is kept in the caller's conversation: ``conversation_id`` continues
one (its stored history is used; a ``context.history`` sent with it is ignored), none starts a
new one (holding the ``context.history`` sent, if any). Every answer names it (``conversation_id`` in the JSON and the SSE ``done`` event, and
the ``X-Conversation-ID`` header). With ``CHAT_STORE=off`` the history comes from
``context.history`` alone and nothing is kept.

SSE events: ``waiting``, ``notice``, ``delta`` (``{"text"}``), ``thinking`` (``{"text"}``, a
reasoning model's thinking: not part of the reply, ``"reasoning"`` in the JSON), then ``done``
(the JSON above) or ``error``. Errors found before the first event (bad parameters, an over-long message) are a
plain JSON 4xx/5xx, not a stream. Access and rate limits are checked by the door before this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chat.errors import ChatError
from chat.knowledge.context import require_knowledge
from chat.messages import GenerationParams, Message
from chat.reply.turn import Failure, ReplyRequest, StoredConversation
from chat.service.bodies import (
    PARAM_KEYS,
    bool_field,
    messages_field,
    object_field,
    params_from,
    read_json,
    reject_unknown,
    text_field,
)
from chat.service.conversations import header_key, in_thread, open_turn
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import SSE_HEADERS, ReplyRun, asked_language, frame, reply_body, sse
from chat.service.shared import Service

BODY_KEYS = ("user_input", "conversation_id", "context", "stream")
CONTEXT_KEYS = ("history", "system_prompt", "backend", "knowledge", *PARAM_KEYS)

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["user_input"],
    "properties": {
        "user_input": {"type": "string"},
        "stream": {"type": "boolean", "default": False},
        "conversation_id": {"type": "string"},
        "context": {
            "type": "object",
            "properties": {
                "history": {"type": "array", "items": {"type": "object"}},
                "system_prompt": {"type": "string"},
                "backend": {"type": "string"},
                "knowledge": {"type": "string", "description": "answer from this knowledge base"},
                **{k: {"type": "number"} for k in PARAM_KEYS},
            },
        },
    },
}


KEY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string", "maxLength": 64},
    "description": "the client's name for the message: sent again with the same key, it is stored once",
}


def parse_context(
    context: dict[str, Any], user_input: str, defaults: GenerationParams, *, history: list[Message]
) -> ReplyRequest:
    """Messages and parameters from a ``context`` object (shared with ``/ws``)."""
    system = text_field(context, "system_prompt", "context.")
    backend = text_field(context, "backend", "context.") or None
    knowledge = text_field(context, "knowledge", "context.") or None
    params = params_from(context, defaults)
    system_msgs = [Message("system", system)] if system.strip() else []
    messages = [*system_msgs, *history, Message("user", user_input)]
    return ReplyRequest(messages=messages, params=params, backend=backend, knowledge=knowledge)


def parse_chat(body: dict[str, Any], defaults: GenerationParams) -> tuple[ReplyRequest, list[Message]]:
    """The reply a checked body asks for, read once, and the history the client sent."""
    context = object_field(body, "context")
    reject_unknown(context, CONTEXT_KEYS, "context")
    history = messages_field(context.get("history"), "context.history")
    user_input = text_field(body, "user_input", "", required=True)
    return parse_context(context, user_input, defaults, history=history), history


def in_conversation(
    chat: ReplyRequest, sent: list[Message], turn: tuple[StoredConversation, list[Message]] | None
) -> ReplyRequest:
    """The request in its stored conversation (``turn``: the conversation and its stored history).
    A continued conversation's stored history replaces the ``sent`` one; a new conversation keeps
    what was sent (the pipeline stores it before the new message)."""
    if turn is None:
        return chat
    conversation, stored = turn
    if conversation.new:
        return replace(chat, conversation=conversation)
    system = chat.messages[: len(chat.messages) - len(sent) - 1]  # the system prompt, if any
    return replace(chat, messages=[*system, *stored, chat.messages[-1]], conversation=conversation)


def register(app: FastAPI, service: Service) -> None:
    @app.post(
        "/api/chat",
        tags=["chat"],
        summary="One chat reply (JSON), or its events (SSE) with stream=true",
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": REQUEST_SCHEMA}}},
            "parameters": [KEY_PARAMETER],
        },
    )
    async def api_chat(request: Request) -> Response:
        record = service.record("rest", request)
        body: dict[str, Any] = {}
        try:
            body = await read_json(request, service.max_body)
            reject_unknown(body, BODY_KEYS, "api.where_body")
            stream = bool_field(body, "stream")
            asked, sent = parse_chat(body, service.defaults)  # refused before anything is stored
            await check_knowledge(service, asked.knowledge)
            conversation_id = text_field(body, "conversation_id", "")
            turn = await open_turn(service, request, conversation_id, key=header_key(request))
            chat = in_conversation(asked, sent, turn)
        except ApiError as exc:
            service.tracker.reject(record, exc.kind, exc.status)
            return exc.response(record.id, asked_language(request, body.get("user_input")))
        run = ReplyRun(service, record, chat)
        response = await (_stream_reply(run) if stream else _json_reply(run, request))
        if chat.conversation is not None:
            response.headers["X-Conversation-ID"] = chat.conversation.id
        return response


async def check_knowledge(service: Service, knowledge: str | None) -> None:
    """404 for a knowledge base that does not exist, before a conversation is opened or a
    message stored (shared with ``/ws``; the pipeline checks again for every other way in)."""
    if knowledge:
        try:
            await in_thread(require_knowledge, service.knowledge, knowledge)
        except ChatError as exc:
            raise from_chat_error(exc) from None


def _done(data: dict[str, Any], chat: ReplyRequest) -> dict[str, Any]:
    """A finished reply's (or failure's) JSON, naming the conversation it was kept in."""
    return {**data, "conversation_id": chat.conversation.id} if chat.conversation else data


def _failed(run: ReplyRun, failure: Failure) -> Response:
    """A failed reply as a plain JSON error; the user's message was kept all the same."""
    error = from_chat_error(failure.error, run.request.lang)
    headers = {**error.headers, "X-Request-ID": run.record.id}
    body = _done(error.body(run.record.id), run.request)
    return JSONResponse(body, status_code=error.status, headers=headers)


async def _json_reply(run: ReplyRun, request: Request) -> Response:
    try:
        outcome = await run.outcome(request)
    finally:
        await run.aclose()
    if outcome is None:  # the client left and the reply was cancelled: nobody reads this
        return Response(status_code=499)
    if isinstance(outcome, Failure):
        return _failed(run, outcome)
    body = _done(reply_body(outcome, run.record), run.request)
    return JSONResponse(body, headers={"X-Request-ID": run.record.id})


async def _stream_reply(run: ReplyRun) -> Response:
    lang = run.request.lang
    first = await run.first()
    if isinstance(first, Failure):  # nothing streamed yet: a plain JSON error with its status
        await run.aclose()
        return _failed(run, first)

    async def events() -> AsyncIterator[str]:
        try:
            async for step in run.resume(first):
                name, data = frame(step, run.record, lang)
                yield sse(name, _done(data, run.request) if name in ("done", "error") else data)
        finally:
            await run.aclose()

    headers = {**SSE_HEADERS, "X-Request-ID": run.record.id}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
