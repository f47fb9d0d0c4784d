"""One reply through the service: the tracked pipeline driven from async routes, and the JSON
its steps become on ``/api/chat`` (JSON and SSE) and ``/ws``.

Every route runs a reply the same way (``ReplyRun``) and only chooses how to encode the steps:
``frame(step)`` gives the ``(type, payload)`` pair that SSE sends as ``event: type`` and ``/ws``
as ``{"type": ..., ...}``; ``/v1`` has its own OpenAI shapes (``chat.service.openai_routes``).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from chat.i18n import Lang, request_language, translated
from chat.messages import Notice, Stats, TextDelta, ThinkingDelta, ToolUse, Waiting
from chat.reply.turn import OUTCOMES, Cancelled, Failure, Outcome, Refusal, Reply, ReplyRequest, Step
from chat.service.async_bridge import EventPump, cancel_on_disconnect
from chat.service.errors import ApiError, from_chat_error
from chat.service.tracking import CLIENT_CLOSED, RequestRecord

if TYPE_CHECKING:
    from chat.service.shared import Service

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


class ReplyRun:
    """One tracked reply for an async route: ``async for step in run``, or ``await run.outcome()``.

    Always ``await run.aclose()``: it stops generation if the reply is still running, frees the
    model, and counts and logs the request once.
    """

    def __init__(self, service: Service, record: RequestRecord, request: ReplyRequest) -> None:
        self.record = record
        self.request = request
        self.cancel = threading.Event()
        self._tracker = service.tracker
        steps = service.tracker.run(record, request, cancel=self.cancel)
        self._pump: EventPump[Step] = EventPump(steps, self.cancel, service.budget)

    def __aiter__(self) -> AsyncIterator[Step]:
        return self._pump

    async def first(self) -> Step:
        """The first step: a route can still answer with a plain HTTP error when it is a failure."""
        return await self._pump.__anext__()

    async def resume(self, first: Step) -> AsyncIterator[Step]:
        """``first`` (from ``first()``), then the rest of the steps."""
        yield first
        async for step in self._pump:
            yield step

    async def outcome(self, http: Request) -> Outcome | None:
        """Run to the end without streaming; ``None`` when the HTTP client went away first."""
        outcome: Outcome | None = None
        client_gone = False

        async def watch() -> None:
            nonlocal client_gone
            await cancel_on_disconnect(http, self.cancel)
            client_gone = True

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            async for run in self._pump.batches():  # one thread hop per run of events
                outcome = next((s for s in run if isinstance(s, OUTCOMES)), outcome)
            tasks.cancel_scope.cancel()
        if client_gone:
            self.record.status = CLIENT_CLOSED
            return None
        return outcome

    async def aclose(self) -> None:
        await self._pump.aclose()
        self._tracker.finish(self.record)


def asked_language(conn: HTTPConnection, text: Any = None) -> Lang:
    """The language to refuse a request in: its message when it has one, else Accept-Language."""
    return request_language(text if isinstance(text, str) else "", conn.headers.get("accept-language", ""))


def json_refusals(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """A route whose ``ApiError`` refusals answer in the one JSON error shape, in the caller's
    language (Accept-Language)."""

    @functools.wraps(handler)
    async def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(request, *args, **kwargs)
        except ApiError as exc:
            return exc.response(lang=asked_language(request))

    return wrapped


def frame(step: Step, record: RequestRecord, lang: Lang) -> tuple[str, dict[str, Any]]:
    """``(type, payload)`` of one step, as SSE events and ``/ws`` frames carry it."""
    match step:
        case TextDelta(text=text):
            return "delta", {"text": text}
        case ThinkingDelta(text=text):
            return "thinking", {"text": text}
        case Notice(kind=kind, text=text):
            return "notice", {"kind": kind, "text": text}
        case ToolUse():
            return "tool_call", step.to_dict()
        case Waiting(position=position, status=status):
            return "waiting", {
                "position": position,
                **({"status": translated(status, lang)} if status else {}),
            }
        case Failure(error=error):
            api_error = from_chat_error(error, lang)
            return "error", {"id": record.id, "status": api_error.status, **api_error.body(record.id)}
    return "done", reply_body(step, record)


def reply_body(outcome: Reply | Refusal | Cancelled, record: RequestRecord) -> dict[str, Any]:
    """``{"reply": ..., "reasoning": ..., <stats>, "notices": [...], "sources": [...]}``: the full
    reply the user saw, a reasoning model's thinking apart from it ("" for others), the figures,
    and the knowledge base chunks it was given (``context.knowledge``), best first.

    A refusal is answered, not failed: the refusal is the reply, with ``"blocked": true``.
    """
    return {
        "id": record.id,
        "reply": outcome.text,
        "reasoning": "" if isinstance(outcome, Refusal) else outcome.thinking,
        "blocked": isinstance(outcome, Refusal),
        **stats_fields(outcome.stats),
        "notices": [{"kind": n.kind, "text": n.text} for n in outcome.notices],
        "sources": sources_field(outcome),
        "tool_calls": [use.to_dict() for use in getattr(outcome, "tools", ())],
    }


def sources_field(outcome: Reply | Refusal | Cancelled) -> list[dict[str, Any]]:
    """``[{"document", "heading", "text", "score", "document_id"}]``, best first ([] without)."""
    return [source.to_dict() for source in outcome.sources] if isinstance(outcome, Reply) else []


def stats_fields(stats: Stats) -> dict[str, Any]:
    fields = asdict(stats)
    extra = fields.pop("extra", None)
    if extra:
        fields["extra"] = extra
    return fields


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def sse(event: str | None, data: Any) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else dumps(data)}\n\n"
