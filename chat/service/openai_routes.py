"""``POST /v1/chat/completions`` and ``GET /v1/models``: the guarded engine for OpenAI clients.

Any OpenAI client library works with ``base_url="http://host:7860/v1"`` and, when
``CHAT_API_TOKEN`` is set, that token as its API key. Filters, cache, retry and fallback apply
as on every other entry point. ``model`` picks a backend by name ("local", "cloud") or by its
model name; anything else means the default backend. A filtered request is answered with the
refusal and ``finish_reason: "content_filter"``. Tools, ``n > 1`` and logprobs are refused.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chat.errors import ChatError, InputBlocked, OutputBlocked
from chat.i18n import Lang, detect_language
from chat.messages import Done, GenerationParams, Message, Stats, TextDelta, Waiting
from chat.service.bodies import bool_field, invalid, messages_field, object_field, params_from, read_json
from chat.service.bridge import EventPump, collect_reply
from chat.service.core import Service
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import SSE_HEADERS, sse
from chat.service.tracking import RequestRecord

FINISH_REASONS = {"stop": "stop", "length": "length", "blocked": "content_filter"}
UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "audio", "prediction")


def parse_completion(body: dict[str, Any], service: Service) -> tuple[list[Message], GenerationParams, str]:
    """(messages, params, backend name) from an OpenAI request body; unknown fields are ignored."""
    for key in UNSUPPORTED:
        if body.get(key) not in (None, [], {}, "none", "auto"):
            raise invalid(f"{key} is not supported by this server")
    if body.get("n") not in (None, 1):
        raise invalid("only n=1 is supported")
    if body.get("logprobs"):
        raise invalid("logprobs are not supported")
    raw = body.get("messages")
    if raw is None:
        raise invalid("messages is required")
    if isinstance(raw, list):
        raw = [
            {**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m
            for m in raw
        ]
    messages = messages_field(raw, "messages")
    if not messages:
        raise invalid("messages must not be empty")
    values = dict(body)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        values["max_new_tokens"] = max_tokens
    values.pop("context_length", None)
    params = params_from(values, service.defaults)
    return messages, params, _backend_for(body.get("model"), service)


def _backend_for(model: Any, service: Service) -> str:
    backends = service.engine.backends
    if isinstance(model, str):
        if model in backends:
            return model
        for name, backend in backends.items():
            if backend.model == model:
                return name
    elif model is not None:
        raise invalid(f"model must be a string, got {type(model).__name__}")
    return service.engine.default_backend


def register(app: FastAPI, service: Service) -> None:
    @app.get("/v1/models", tags=["openai"], summary="The backends, as OpenAI models")
    async def models(request: Request) -> Response:
        try:
            service.check_token(request)
        except ApiError as exc:
            return exc.response()
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "self-hosted", "root": backend.model}
            for name, backend in service.engine.backends.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.post("/v1/chat/completions", tags=["openai"], summary="OpenAI-compatible chat completions")
    async def completions(request: Request) -> Response:
        record = service.record("openai", request)
        try:
            service.check_token(request)
            body = await read_json(request, service.max_body)
            messages, params, backend = parse_completion(body, service)
            stream = bool_field(body, "stream")
            usage_wanted = bool_field(
                object_field(body, "stream_options"), "include_usage", "stream_options."
            )
        except ApiError as exc:
            service.tracker.reject(record, exc.kind, exc.status)
            return exc.response(record.id)
        completion = Completion(service, record, backend, detect_language(messages[-1].content))
        pump = service.pump(record, messages, params, backend=backend)
        if stream:
            return await completion.stream(pump, usage_wanted)
        return await completion.reply(pump, request)


class Completion:
    """One completion's id, model name and language, and how it is sent."""

    def __init__(self, service: Service, record: RequestRecord, backend: str, lang: Lang) -> None:
        self.service = service
        self.record = record
        self.lang = lang
        self.id = f"chatcmpl-{record.id}"
        self.created = int(time.time())
        self.model = service.engine.backends[backend].model if backend in service.engine.backends else backend
        self.headers = {"X-Request-ID": record.id}

    def body(self, text: str, stats: Stats) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": stats.model or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": FINISH_REASONS.get(stats.finish_reason, "stop"),
                    "logprobs": None,
                }
            ],
            "usage": _usage(stats),
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse(None, {**self.chunk_head(), "choices": [choice], **extra})

    def chunk_head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    async def reply(self, pump: EventPump, request: Request) -> Response:
        done, _, failure = await collect_reply(pump, request)
        tracker = self.service.tracker
        if isinstance(failure, (InputBlocked, OutputBlocked)):
            tracker.finish(self.record, 200)
            refusal = Stats(backend=self.record.backend, finish_reason="blocked")
            return JSONResponse(self.body(failure.user_message(self.lang), refusal), headers=self.headers)
        if failure is not None:
            error = from_chat_error(failure, self.lang)
            tracker.finish(self.record, error.status)
            return error.response(self.record.id)
        if done is None:
            tracker.finish(self.record, 499)
            return Response(status_code=499)
        tracker.finish(self.record, 200)
        return JSONResponse(self.body(done.text, done.stats), headers=self.headers)

    async def stream(self, pump: EventPump, usage_wanted: bool) -> Response:
        tracker = self.service.tracker
        try:
            first = await pump.__anext__()
        except (InputBlocked, OutputBlocked) as exc:
            await pump.aclose()
            tracker.finish(self.record, 200)
            chunks = [
                self.chunk({"role": "assistant", "content": exc.user_message(self.lang)}),
                self.chunk({}, "content_filter"),
                "data: [DONE]\n\n",
            ]
            return StreamingResponse(
                iter(chunks), media_type="text/event-stream", headers=self._sse_headers()
            )
        except ChatError as exc:
            await pump.aclose()
            error = from_chat_error(exc, self.lang)
            tracker.finish(self.record, error.status)
            return error.response(self.record.id)

        async def chunks() -> AsyncIterator[str]:
            try:
                yield self.chunk({"role": "assistant", "content": ""})
                event = first
                while True:
                    if isinstance(event, TextDelta):
                        yield self.chunk({"content": event.text})
                    elif isinstance(event, Waiting):
                        status = " ".join(event.status.split())  # one line: an SSE comment
                        yield f": waiting, position {event.position} {status}\n\n"  # keeps proxies open
                    elif isinstance(event, Done):
                        yield self.chunk({}, FINISH_REASONS.get(event.stats.finish_reason, "stop"))
                        if usage_wanted:
                            yield sse(
                                None, {**self.chunk_head(), "choices": [], "usage": _usage(event.stats)}
                            )
                    try:
                        event = await pump.__anext__()
                    except StopAsyncIteration:
                        break
                yield "data: [DONE]\n\n"
            except ChatError as exc:
                yield sse(None, from_chat_error(exc, self.lang).body(self.record.id))
            finally:
                await pump.aclose()
                tracker.finish(self.record, 200)

        return StreamingResponse(chunks(), media_type="text/event-stream", headers=self._sse_headers())

    def _sse_headers(self) -> dict[str, str]:
        return {**SSE_HEADERS, **self.headers}


def _usage(stats: Stats) -> dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    }
