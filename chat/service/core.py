"""What every service route shares: the one engine, settings, metrics, log, auth and limits."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping, Sequence

from starlette.requests import HTTPConnection

from chat.engine import ChatEngine
from chat.messages import GenerationParams, Message
from chat.service.access_log import AccessLog
from chat.service.bridge import EventPump, ThreadBudget
from chat.service.errors import ApiError
from chat.service.metrics import Metrics
from chat.service.ratelimit import ClientLimiter, client_of
from chat.service.tracking import MeteredEngine, RequestRecord, Tracker, request_id
from chat.settings import Settings

DEFAULT_CONTEXT = 4096


class Service:
    def __init__(self, engine: ChatEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = Metrics(engine)
        self.log = AccessLog(fmt=settings.log_format, user_text=settings.log_user_text)
        self.tracker = Tracker(engine, self.metrics, self.log)
        self.limiter = ClientLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        self.budget = ThreadBudget()
        self.max_body = settings.max_body_bytes
        windows = [b.context_window() for b in engine.backends.values()]
        self.max_context = min([w for w in windows if w] or [settings.n_ctx])
        self.defaults = GenerationParams(context_length=min(DEFAULT_CONTEXT, self.max_context))

    def observed(self, entry: str) -> MeteredEngine:
        """The engine for another entry point (the Gradio UI), counted under ``entry``."""
        return MeteredEngine(self.tracker, entry)

    def record(self, entry: str, conn: HTTPConnection) -> RequestRecord:
        return RequestRecord(
            entry, id=request_id(conn.headers.get("x-request-id")), client=client_of(conn.scope)
        )

    def check_token(self, conn: HTTPConnection, *, allow_query: bool = False) -> None:
        """401 unless ``Authorization: Bearer <CHAT_API_TOKEN>`` (or ``?token=`` on a WebSocket)."""
        expected = self.settings.api_token
        if not expected:
            return
        scheme, _, given = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = conn.query_params.get("token", "") if allow_query else ""
        if not secrets.compare_digest(given.strip().encode(), expected.encode()):
            raise ApiError(
                401,
                "unauthorized",
                "a valid API token is required: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def check_rate(self, client: str) -> None:
        if self.limiter is not None:
            wait = self.limiter.hit(client)
            if wait is not None:
                raise self.limiter.error(wait)

    def pump(
        self,
        record: RequestRecord,
        messages: Sequence[Message | Mapping[str, str]],
        params: GenerationParams,
        *,
        backend: str | None = None,
    ) -> EventPump:
        """The tracked engine stream for one reply, ready for ``async for``."""
        cancel = threading.Event()
        events = self.tracker.events(record, messages, params, backend=backend, cancel=cancel)
        return EventPump(events, cancel, self.budget)
