"""``POST /api/chat``: one reply as JSON, or as server-sent events with ``"stream": true``.

    {"user_input": "Hi", "context": {"history": [...], "system_prompt": "...", "temperature": 0.2}}
    -> {"id": ..., "reply": "...", "backend": "local", "completion_tokens": 12, ..., "notices": []}

SSE events: ``waiting``, ``notice``, ``delta`` (``{"text"}``), then ``done`` (the JSON above) or
``error``. Errors found before the first event (bad parameters, an over-long message) are a
plain JSON 4xx/5xx, not a stream. Access and rate limits are checked by the door before this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chat.messages import GenerationParams, Message
from chat.pipeline import Failure, ReplyRequest
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
from chat.service.core import Service
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import SSE_HEADERS, ReplyRun, asked_language, frame, reply_body, sse

BODY_KEYS = ("user_input", "context", "stream")
CONTEXT_KEYS = ("history", "system_prompt", "backend", *PARAM_KEYS)

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["user_input"],
    "properties": {
        "user_input": {"type": "string"},
        "stream": {"type": "boolean", "default": False},
        "context": {
            "type": "object",
            "properties": {
                "history": {"type": "array", "items": {"type": "object"}},
                "system_prompt": {"type": "string"},
                "backend": {"type": "string"},
                **{k: {"type": "number"} for k in PARAM_KEYS},
            },
        },
    },
}


def parse_context(
    context: dict[str, Any], user_input: str, defaults: GenerationParams, *, history: list[Message]
) -> ReplyRequest:
    """Messages and parameters from a ``context`` object (shared with ``/ws``)."""
    system = text_field(context, "system_prompt", "context.")
    backend = text_field(context, "backend", "context.") or None
    params = params_from(context, defaults)
    system_msgs = [Message("system", system)] if system.strip() else []
    messages = [*system_msgs, *history, Message("user", user_input)]
    return ReplyRequest(messages=messages, params=params, backend=backend)


def parse_chat(body: dict[str, Any], defaults: GenerationParams) -> tuple[ReplyRequest, bool]:
    reject_unknown(body, BODY_KEYS, "api.where_body")
    user_input = text_field(body, "user_input", "", required=True)
    context = object_field(body, "context")
    reject_unknown(context, CONTEXT_KEYS, "context")
    history = messages_field(context.get("history"), "context.history")
    stream = bool_field(body, "stream")
    return parse_context(context, user_input, defaults, history=history), stream


def register(app: FastAPI, service: Service) -> None:
    @app.post(
        "/api/chat",
        tags=["chat"],
        summary="One chat reply (JSON), or its events (SSE) with stream=true",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": REQUEST_SCHEMA}}}},
    )
    async def api_chat(request: Request) -> Response:
        record = service.record("rest", request)
        body: dict[str, Any] = {}
        try:
            body = await read_json(request, service.max_body)
            chat, stream = parse_chat(body, service.defaults)
        except ApiError as exc:
            service.tracker.reject(record, exc.kind, exc.status)
            return exc.response(record.id, asked_language(request, body.get("user_input")))
        run = ReplyRun(service, record, chat)
        if stream:
            return await _stream_reply(run)
        return await _json_reply(run, request)


async def _json_reply(run: ReplyRun, request: Request) -> Response:
    try:
        outcome = await run.outcome(request)
    finally:
        await run.aclose()
    if outcome is None:  # the client left and the reply was cancelled: nobody reads this
        return Response(status_code=499)
    if isinstance(outcome, Failure):
        return from_chat_error(outcome.error, run.request.lang).response(run.record.id)
    return JSONResponse(reply_body(outcome, run.record), headers={"X-Request-ID": run.record.id})


async def _stream_reply(run: ReplyRun) -> Response:
    lang = run.request.lang
    first = await run.first()
    if isinstance(first, Failure):  # nothing streamed yet: a plain JSON error with its status
        await run.aclose()
        return from_chat_error(first.error, lang).response(run.record.id)

    async def events() -> AsyncIterator[str]:
        try:
            async for step in run.resume(first):
                yield sse(*frame(step, run.record, lang))
        finally:
            await run.aclose()

    headers = {**SSE_HEADERS, "X-Request-ID": run.record.id}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
