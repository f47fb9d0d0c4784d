"""``POST /v1/chat/completions`` and ``GET /v1/models``: the guarded engine for OpenAI clients.

Any OpenAI client library works with ``base_url="http://host:7860/v1"`` and, when
``CHAT_API_TOKEN`` is set, that token as its API key. Filters, cache, retry and fallback apply
as on every other entry point. ``model`` picks a backend by name ("local", "cloud") or by its
model name; anything else means the default backend. A filtered request is answered with the
refusal and ``finish_reason: "content_filter"``. ``tools``, ``tool_choice`` and
``parallel_tool_calls`` are taken as OpenAI defines them (``chat.backends.tool_offer``): a reply that calls
the client's tools carries ``tool_calls`` with ``finish_reason: "tool_calls"``, streamed as OpenAI
streams them; the server's own MCP tools are never mixed in here. ``n > 1`` and logprobs are refused.
``response_format`` (JSON mode, JSON schema) is honoured by every backend that may answer, or
refused with a 400 naming the one that cannot. A reasoning model's thinking comes apart from
the reply, as DeepSeek sends it: ``reasoning_content`` in the message and in stream deltas.
``knowledge`` (an extra body field) answers from that knowledge base; the reply then carries
``sources`` (best first) beside ``choices``: in the body, or in the stream's finishing chunk.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chat.backends.tool_offer import parse_offer
from chat.errors import InvalidRequest
from chat.messages import GenerationParams, Message, Stats, TextDelta, ThinkingDelta, ToolCall, Waiting
from chat.reply.turn import Cancelled, Failure, Refusal, Reply, ReplyRequest, Step
from chat.service.bodies import (
    bool_field,
    invalid_field,
    messages_field,
    object_field,
    params_from,
    read_json,
    response_format_field,
    text_field,
)
from chat.service.errors import ApiError, from_chat_error, from_invalid
from chat.service.replies import SSE_HEADERS, ReplyRun, asked_language, sources_field, sse
from chat.service.shared import Service

FINISH_REASONS = {"stop": "stop", "length": "length", "blocked": "content_filter", "tool_calls": "tool_calls"}
UNSUPPORTED = ("functions", "function_call", "audio", "prediction")


def parse_completion(body: dict[str, Any], service: Service) -> tuple[list[Message], GenerationParams, str]:
    """(messages, params, backend name) from an OpenAI request body; unknown fields are ignored."""
    for key in UNSUPPORTED:
        if body.get(key) not in (None, [], {}, "none", "auto"):
            raise invalid_field("api.unsupported", field=key)
    if body.get("n") not in (None, 1):
        raise invalid_field("api.only_n1")
    if body.get("logprobs"):
        raise invalid_field("api.unsupported", field="logprobs")
    raw = body.get("messages")
    if raw is None:
        raise invalid_field("api.required", field="messages")
    if isinstance(raw, list):
        raw = [
            {**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m
            for m in raw
        ]
    messages = messages_field(raw, "messages")
    if not messages:
        raise invalid_field("api.messages_empty")
    values = dict(body)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        values["max_new_tokens"] = max_tokens
    values.pop("context_length", None)
    backend = _backend_for(body.get("model"), service)
    response_format = response_format_field(body.get("response_format"), service.engine.chain(backend))
    params = replace(
        params_from(values, service.defaults), response_format=response_format, tools=_tools(body)
    )
    return messages, params, backend


def _tools(body: dict[str, Any]) -> str | None:
    """The client's ``tools``, ``tool_choice`` and ``parallel_tool_calls`` as canonical JSON."""
    try:
        offer = parse_offer(body.get("tools"), body.get("tool_choice"), body.get("parallel_tool_calls"))
    except InvalidRequest as exc:
        raise from_invalid(exc) from None
    return offer.canonical() if offer is not None else None


def _last_text(messages: Any) -> Any:
    """The newest message's content, if the body got that far: it says the user's language."""
    last = messages[-1] if isinstance(messages, list) and messages else None
    return last.get("content") if isinstance(last, dict) else None


def _backend_for(model: Any, service: Service) -> str:
    backends = service.engine.backends
    if isinstance(model, str):
        if model in backends:
            return model
        for name, backend in backends.items():
            if backend.model == model:
                return name
    elif model is not None:
        raise invalid_field("api.not_string", field="model", kind=type(model).__name__)
    return service.engine.default_backend


def register(app: FastAPI, service: Service) -> None:
    @app.get("/v1/models", tags=["openai"], summary="The backends, as OpenAI models")
    async def models() -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "self-hosted", "root": backend.model}
            for name, backend in service.engine.backends.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.post("/v1/chat/completions", tags=["openai"], summary="OpenAI-compatible chat completions")
    async def completions(request: Request) -> Response:
        record = service.record("openai", request)
        body: dict[str, Any] = {}
        try:
            body = await read_json(request, service.max_body)
            messages, params, backend = parse_completion(body, service)
            knowledge = text_field(body, "knowledge", "") or None
            stream = bool_field(body, "stream")
            usage_wanted = bool_field(
                object_field(body, "stream_options"), "include_usage", "stream_options."
            )
        except ApiError as exc:
            service.tracker.reject(record, exc.kind, exc.status)
            return exc.response(record.id, asked_language(request, _last_text(body.get("messages"))))
        chat = ReplyRequest(
            messages=messages, params=params, backend=backend, knowledge=knowledge, server_tools=False
        )
        run = ReplyRun(service, record, chat)
        completion = Completion(service, run, backend)
        if stream:
            return await completion.stream(usage_wanted)
        return await completion.reply(request)


class Completion:
    """One completion's id and model name, and how its reply is sent: a body, or chunks."""

    def __init__(self, service: Service, run: ReplyRun, backend: str) -> None:
        self.run = run
        self.lang = run.request.lang
        self.id = f"chatcmpl-{run.record.id}"
        self.created = int(time.time())
        self.model = service.engine.backends[backend].model if backend in service.engine.backends else backend
        self.headers = {"X-Request-ID": run.record.id}

    def body(
        self, text: str, stats: Stats, thinking: str = "", calls: tuple[ToolCall, ...] = ()
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["reasoning_content"] = thinking
        if calls:
            message.update(content=text or None, tool_calls=[call.to_dict() for call in calls])
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": stats.model or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
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

    async def reply(self, request: Request) -> Response:
        try:
            outcome = await self.run.outcome(request)
        finally:
            await self.run.aclose()
        if outcome is None:  # the client left: nobody reads this
            return Response(status_code=499)
        if isinstance(outcome, Failure):
            return from_chat_error(outcome.error, self.lang).response(self.run.record.id)
        thinking = "" if isinstance(outcome, Refusal) else outcome.thinking
        calls = outcome.tool_calls if isinstance(outcome, Reply) else ()
        body = {**self.body(outcome.text, outcome.stats, thinking, calls), **self._sources(outcome)}
        return JSONResponse(body, headers=self.headers)

    async def stream(self, usage_wanted: bool) -> Response:
        first = await self.run.first()
        if isinstance(first, Failure):  # nothing streamed yet: a plain JSON error with its status
            await self.run.aclose()
            return from_chat_error(first.error, self.lang).response(self.run.record.id)

        async def chunks() -> AsyncIterator[str]:
            try:
                # A refusal before any text is the content (as in the JSON body).
                opening = first.text if isinstance(first, Refusal) else ""
                yield self.chunk({"role": "assistant", "content": opening})
                texted = bool(opening)
                async for step in self.run.resume(first):
                    texted = texted or (isinstance(step, TextDelta) and bool(step.text))
                    for text in self._encode(step, usage_wanted, texted):
                        yield text
            finally:
                await self.run.aclose()

        return StreamingResponse(chunks(), media_type="text/event-stream", headers=self._sse_headers())

    def _encode(self, step: Step, usage_wanted: bool, texted: bool) -> list[str]:
        """The SSE lines of one step; the outcome ends the stream with ``[DONE]`` (not an error)."""
        match step:
            case TextDelta(text=text):
                return [self.chunk({"content": text})]
            case ThinkingDelta(text=text):
                return [self.chunk({"reasoning_content": text})]
            case Waiting(position=position, status=status):
                status = " ".join(status.split())  # one line: an SSE comment
                return [f": waiting, position {position} {status}\n\n"]  # keeps proxies open
            case Failure(error=error):
                return [sse(None, from_chat_error(error, self.lang).body(self.run.record.id))]
            case Reply() | Refusal() | Cancelled():
                lines = (
                    [self.chunk({"content": step.text})] if isinstance(step, Refusal) and not texted else []
                )
                lines += self._calls(step.tool_calls if isinstance(step, Reply) else ())
                finish = FINISH_REASONS.get(step.stats.finish_reason, "stop")
                lines.append(self.chunk({}, finish, **self._sources(step)))
                if usage_wanted:
                    lines.append(sse(None, {**self.chunk_head(), "choices": [], "usage": _usage(step.stats)}))
                return [*lines, "data: [DONE]\n\n"]
        return []  # a notice: OpenAI chunks have no place for it

    def _calls(self, calls: tuple[ToolCall, ...]) -> list[str]:
        """Each call as OpenAI streams it: its index, id and name, then its arguments."""
        lines = []
        for index, call in enumerate(calls):
            head = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            lines.append(self.chunk({"tool_calls": [head]}))
            lines.append(
                self.chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})
            )
        return lines

    def _sources(self, outcome: Reply | Refusal | Cancelled) -> dict[str, Any]:
        """``{"sources": [...]}`` when the request named a knowledge base; plain OpenAI otherwise."""
        return {"sources": sources_field(outcome)} if self.run.request.knowledge else {}

    def _sse_headers(self) -> dict[str, str]:
        return {**SSE_HEADERS, **self.headers}


def _usage(stats: Stats) -> dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    }
