"""What happened to each request: the engine's events and errors become metrics and a log line.

Every entry point (REST, SSE, WebSocket, OpenAI, the Gradio UI) runs the engine through
``Tracker.events``; ``Tracker.finish`` then counts the request and writes its log line, once.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from chat.engine import ChatEngine
from chat.errors import ChatError, InputBlocked
from chat.messages import Done, Event, GenerationParams, Message, Stats, TextDelta
from chat.service.access_log import AccessLog
from chat.service.errors import error_kind
from chat.service.metrics import Metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def request_id(given: str | None = None) -> str:
    """The caller's ``X-Request-ID`` when it is a safe token (it goes into logs), else a new one."""
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


@dataclass
class RequestRecord:
    """One request's facts, filled in as it runs."""

    entry: str
    id: str = field(default_factory=request_id)
    client: str = ""
    backend: str = ""
    started: float = field(default_factory=time.perf_counter)
    first_text_at: float | None = None
    stats: Stats | None = None
    outcome: str = ""
    error: str = ""
    status: int | None = None
    user_input: str = ""
    reply: str = ""
    finished: bool = False

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_text_at is None else self.first_text_at - self.started

    def log_fields(self) -> dict[str, Any]:
        stats = self.stats
        ttft = self.time_to_first_token
        return {
            "request_id": self.id,
            "entry": self.entry,
            "client": self.client,
            "status": self.status,
            "outcome": self.outcome,
            "error": self.error,
            "backend": self.backend,
            "model": stats.model if stats else None,
            "ttft_ms": round(ttft * 1000, 1) if ttft is not None else None,
            "total_ms": round((time.perf_counter() - self.started) * 1000, 1),
            "prompt_tokens": stats.prompt_tokens if stats else None,
            "completion_tokens": stats.completion_tokens if stats else None,
            "finish_reason": stats.finish_reason if stats else None,
            "from_cache": stats.from_cache if stats else None,
            "fallback": stats.fallback or None if stats else None,
            "retries": stats.retries or None if stats else None,
            "user_input": self.user_input,
            "reply": self.reply,
        }


class Tracker:
    def __init__(self, engine: ChatEngine, metrics: Metrics, log: AccessLog) -> None:
        self.engine = engine
        self.metrics = metrics
        self.log = log

    def events(
        self,
        record: RequestRecord,
        messages: Iterable[Message | Mapping[str, Any]],
        params: GenerationParams,
        *,
        backend: str | None = None,
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> Iterator[Event]:
        """``engine.stream``, noting first text, the ``Done`` stats and how it ended.

        Closing this generator closes the engine's, which stops generation.
        """
        record.backend = backend or self.engine.default_backend
        messages = list(messages)
        if messages:
            last = messages[-1]
            record.user_input = last.content if isinstance(last, Message) else str(last.get("content", ""))
        gauge = self.metrics.in_flight.labels(record.entry)
        gauge.inc()
        events: Iterator[Event] | None = None
        try:
            events = self.engine.stream(messages, params, backend=backend, cancel=cancel, **kwargs)
            for event in events:
                if isinstance(event, TextDelta) and record.first_text_at is None and event.text:
                    record.first_text_at = time.perf_counter()
                elif isinstance(event, Done):
                    record.stats = event.stats
                    record.backend = event.stats.backend or record.backend
                    record.reply = event.text
                    record.outcome = _outcome(event.stats)
                yield event
        except InputBlocked:
            record.outcome = "blocked"
            raise
        except ChatError as exc:
            record.outcome, record.error = "error", error_kind(exc)
            raise
        except GeneratorExit:
            record.outcome = record.outcome or "cancelled"
            raise
        except Exception:
            record.outcome, record.error = "error", "internal_error"
            raise
        finally:
            if cancel is not None:
                cancel.set()  # wakes a backend that is waiting or generating, then close() ends it
            if events is not None:
                events.close()
            gauge.dec()

    def finish(self, record: RequestRecord, status: int | None = None) -> None:
        """Count the request and write its log line (only the first call does anything)."""
        if record.finished:
            return
        record.finished = True
        if status is not None:
            record.status = status
        if not record.outcome:
            record.outcome = "cancelled" if record.status is None or record.status < 400 else "error"
        m = self.metrics
        backend = record.backend or self.engine.default_backend
        m.requests.labels(record.entry, backend, record.outcome).inc()
        if record.error:
            m.errors.labels(record.entry, record.error).inc()
        if record.stats is not None:
            m.prompt_tokens.labels(record.entry, backend).inc(record.stats.prompt_tokens)
            m.completion_tokens.labels(record.entry, backend).inc(record.stats.completion_tokens)
        if record.time_to_first_token is not None:
            m.ttft.labels(record.entry, backend).observe(record.time_to_first_token)
        m.latency.labels(record.entry, backend).observe(time.perf_counter() - record.started)
        self.log.write(record.log_fields())

    def reject(self, record: RequestRecord, reason: str, status: int) -> None:
        """A request refused before the engine ran (bad body, no token, over the rate limit)."""
        if record.finished:
            return
        record.finished = True
        record.status, record.outcome, record.error = status, "rejected", reason
        self.metrics.rejected.labels(record.entry, reason).inc()
        self.log.write(record.log_fields())


def _outcome(stats: Stats) -> str:
    if stats.finish_reason == "blocked":
        return "blocked"
    if stats.finish_reason == "error":
        return "interrupted"
    if stats.finish_reason == "cancelled":
        return "cancelled"
    return "ok"


class MeteredEngine:
    """The engine as one entry point sees it: ``stream`` is tracked under ``entry``.

    Hand it to code that only calls ``engine.stream`` (the Gradio handlers), so those requests
    count in the metrics and the log like the service's own.
    """

    def __init__(self, tracker: Tracker, entry: str) -> None:
        self._tracker = tracker
        self._entry = entry

    def stream(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        params: GenerationParams | None = None,
        **kwargs: Any,
    ) -> Iterator[Event]:
        record = RequestRecord(self._entry)
        try:
            yield from self._tracker.events(record, messages, params or GenerationParams(), **kwargs)
        finally:
            self._tracker.finish(record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker.engine, name)
