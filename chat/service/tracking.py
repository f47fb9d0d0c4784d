"""What happened to each request: its reply's steps and outcome become metrics and a log line.

Every entry point (REST, SSE, WebSocket, OpenAI, the Gradio UI) runs the reply pipeline through
``Tracker.run``; ``Tracker.finish`` then counts the request and writes its log line, once.
Label values come from closed sets only (entry points, configured backends, outcomes, error
classes), so nothing a client sends can grow ``/metrics``.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chat.engine import ChatEngine
from chat.knowledge.context import Library
from chat.messages import Stats, TextDelta
from chat.reply import pipeline
from chat.reply.pipeline import Pipeline
from chat.reply.turn import OUTCOMES, Cancelled, Failure, Outcome, Refusal, ReplyRequest, Step
from chat.service.door.access_log import AccessLog
from chat.service.errors import error_kind, from_chat_error
from chat.service.metrics import Metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
UNKNOWN = "unknown"  # the label of a backend name that is not configured
CLIENT_CLOSED = 499  # nginx's status for a request whose client went away before the answer


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
            "cached_prompt_tokens": stats.cached_prompt_tokens if stats else None,
            "completion_tokens": stats.completion_tokens if stats else None,
            "finish_reason": stats.finish_reason if stats else None,
            "from_cache": stats.from_cache if stats else None,
            "fallback": stats.fallback or None if stats else None,
            "retries": stats.retries or None if stats else None,
            "user_input": self.user_input,
            "reply": self.reply,
        }


class Tracker:
    def __init__(
        self, engine: ChatEngine, metrics: Metrics, log: AccessLog, *, knowledge: Library | None = None
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.log = log
        self.knowledge = knowledge  # the knowledge bases a request may name
        # notes each outcome for the operator page (chat.service.reply_journal); None: not noted
        self.journal: Callable[[RequestRecord, ReplyRequest, Outcome], None] | None = None

    def backend_label(self, name: str | None) -> str:
        """A configured backend's name; anything else (a client's typo or junk) is ``unknown``."""
        name = name or self.engine.default_backend
        return name if name in self.engine.backends else UNKNOWN

    def run(
        self, record: RequestRecord, request: ReplyRequest, *, cancel: threading.Event | None = None
    ) -> Iterator[Step]:
        """The pipeline's steps for one reply, noting first text and the outcome in ``record``.

        Closing this generator closes the pipeline, which stops generation. The caller calls
        ``finish`` once the answer is sent.
        """
        record.backend = self.backend_label(request.backend)
        record.user_input = request.user_input
        gauge = self.metrics.in_flight.labels(record.entry)
        gauge.inc()
        try:
            for step in pipeline.run(self.engine, request, cancel=cancel, knowledge=self.knowledge):
                if isinstance(step, TextDelta):
                    if record.first_text_at is None and step.text:
                        record.first_text_at = time.perf_counter()
                elif isinstance(step, OUTCOMES):
                    self._note(record, step)
                    if self.journal is not None:
                        self.journal(record, request, step)
                yield step
        finally:
            gauge.dec()
            if not record.outcome:  # closed before the end: the client went away
                record.outcome, record.status = "cancelled", CLIENT_CLOSED

    def _note(self, record: RequestRecord, outcome: Outcome) -> None:
        record.reply = outcome.text
        record.status = 200
        match outcome:
            case Failure(error=error):
                record.outcome, record.error = "error", error_kind(error)
                record.status = from_chat_error(error).status
                return
            case Refusal():
                record.outcome = "blocked"
            case Cancelled():
                record.outcome = "cancelled"
            case _:
                record.outcome = "interrupted" if outcome.stats.finish_reason == "error" else "ok"
        record.stats = outcome.stats
        answered = self.backend_label(outcome.stats.backend)  # a fallback may have answered
        record.backend = answered if answered != UNKNOWN else record.backend

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
        entry, backend = record.entry, self.backend_label(record.backend)
        m.requests.labels(entry, backend, record.outcome).inc()
        if record.error:
            m.errors.labels(entry, record.error).inc()
        stats = record.stats
        if stats is not None:
            m.prompt_tokens.labels(entry, backend).inc(stats.prompt_tokens)
            m.completion_tokens.labels(entry, backend).inc(stats.completion_tokens)
            if stats.cached_prompt_tokens is not None:
                m.prompt_cached_tokens.labels(entry, backend).inc(stats.cached_prompt_tokens)
            if stats.evaluated_prompt_tokens is not None:
                m.prompt_evaluated_tokens.labels(entry, backend).inc(stats.evaluated_prompt_tokens)
        if record.time_to_first_token is not None:
            m.ttft.labels(entry, backend).observe(record.time_to_first_token)
        m.latency.labels(entry, backend).observe(time.perf_counter() - record.started)
        self.log.write(record.log_fields())

    def reject(self, record: RequestRecord, reason: str, status: int) -> None:
        """A request refused before the engine ran (bad body, no token, over the rate limit)."""
        if record.finished:
            return
        record.finished = True
        record.status, record.outcome, record.error = status, "rejected", reason
        self.metrics.rejected.labels(record.entry, reason).inc()
        self.log.write(record.log_fields())


class MeteredEngine(Pipeline):
    """The reply pipeline as one entry point sees it (the Gradio handlers): every reply is
    tracked under ``entry``, so those requests count in the metrics and the log like the
    service's own."""

    def __init__(self, tracker: Tracker, entry: str) -> None:
        super().__init__(tracker.engine)
        self._tracker = tracker
        self._entry = entry

    def run(self, request: ReplyRequest, *, cancel: threading.Event | None = None) -> Iterator[Step]:
        record = RequestRecord(self._entry)
        try:
            yield from self._tracker.run(record, request, cancel=cancel)
        finally:
            self._tracker.finish(record)
