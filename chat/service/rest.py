"""``POST /api/chat``: one reply as JSON, or as server-sent events with ``"stream": true``.

    {"user_input": "Hi", "context": {"history": [...], "system_prompt": "...", "temperature": 0.2}}
    -> {"id": ..., "reply": "...", "backend": "local", "completion_tokens": 12, ..., "notices": []}

SSE events: ``waiting``, ``notice``, ``delta`` (``{"text"}``), then ``done`` (the JSON above) or
``error``. Errors found before the first event (bad parameters, an over-long message) are a
plain JSON 4xx/5xx, not a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chat.errors import ChatError, InputBlocked, OutputBlocked
from chat.i18n import Lang, detect_language
from chat.messages import Done, GenerationParams, Message, Notice
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
from chat.service.bridge import EventPump, collect_reply
from chat.service.core import Service
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import SSE_HEADERS, event_fields, refusal_body, reply_body, sse
from chat.service.tracking import RequestRecord

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


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    params: GenerationParams
    backend: str | None
    lang: Lang


def parse_context(
    context: dict[str, Any], user_input: str, defaults: GenerationParams, *, history: list[Message]
) -> ChatRequest:
    """Messages and parameters from a ``context`` object (shared with ``/ws``)."""
    system = text_field(context, "system_prompt", "context.")
    backend = text_field(context, "backend", "context.") or None
    params = params_from(context, defaults)
    system_msgs = [Message("system", system)] if system.strip() else []
    messages = [*system_msgs, *history, Message("user", user_input)]
    return ChatRequest(messages, params, backend, detect_language(user_input))


def parse_chat(body: dict[str, Any], defaults: GenerationParams) -> tuple[ChatRequest, bool]:
    reject_unknown(body, BODY_KEYS, "the request body")
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
        try:
            service.check_token(request)
            body = await read_json(request, service.max_body)
            chat, stream = parse_chat(body, service.defaults)
        except ApiError as exc:
            service.tracker.reject(record, exc.kind, exc.status)
            return exc.response(record.id)
        pump = service.pump(record, chat.messages, chat.params, backend=chat.backend)
        if stream:
            return await _stream_reply(service, record, chat, pump)
        return await _json_reply(service, record, chat, pump, request)


async def _json_reply(
    service: Service, record: RequestRecord, chat: ChatRequest, pump: EventPump, request: Request
) -> Response:
    done, notices, failure = await collect_reply(pump, request)
    headers = {"X-Request-ID": record.id}
    if isinstance(failure, (InputBlocked, OutputBlocked)):
        service.tracker.finish(record, 200)
        return JSONResponse(refusal_body(failure, chat.lang, record), headers=headers)
    if failure is not None:
        error = from_chat_error(failure, chat.lang)
        service.tracker.finish(record, error.status)
        return error.response(record.id)
    if done is None:  # the client left and the reply was cancelled: nobody reads this
        service.tracker.finish(record, 499)
        return Response(status_code=499)
    service.tracker.finish(record, 200)
    return JSONResponse(reply_body(done, notices, record), headers=headers)


async def _stream_reply(
    service: Service, record: RequestRecord, chat: ChatRequest, pump: EventPump
) -> Response:
    headers = {**SSE_HEADERS, "X-Request-ID": record.id}
    try:
        first = await pump.__anext__()
    except (InputBlocked, OutputBlocked) as exc:
        await pump.aclose()
        service.tracker.finish(record, 200)
        refusal = sse("done", refusal_body(exc, chat.lang, record))
        return StreamingResponse(iter([refusal]), media_type="text/event-stream", headers=headers)
    except ChatError as exc:
        await pump.aclose()
        error = from_chat_error(exc, chat.lang)
        service.tracker.finish(record, error.status)
        return error.response(record.id)
    except StopAsyncIteration:  # pragma: no cover - the engine always ends with Done
        await pump.aclose()
        service.tracker.finish(record, 500)
        return ApiError(500, "internal_error", "the reply ended without a result").response(record.id)

    async def events() -> AsyncIterator[str]:
        notices: list[Notice] = []
        try:
            async for event in _chain(first, pump):
                if isinstance(event, Done):
                    yield sse("done", reply_body(event, notices, record))
                else:
                    if isinstance(event, Notice):
                        notices.append(event)
                    name, data = event_fields(event)
                    yield sse(name, data)
        except ChatError as exc:
            yield sse("error", from_chat_error(exc, chat.lang).body(record.id))
        finally:
            await pump.aclose()
            service.tracker.finish(record, 200)

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def _chain(first: Any, rest: EventPump) -> AsyncIterator[Any]:
    yield first
    async for event in rest:
        yield event
