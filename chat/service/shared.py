"""What every service route shares: the one engine, settings, metrics, log, auth and limits."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from chat.engine import ChatEngine
from chat.knowledge.context import Library
from chat.messages import GenerationParams
from chat.service.async_bridge import ThreadBudget
from chat.service.door.access import Door
from chat.service.door.access_log import AccessLog
from chat.service.door.identity import CLIENT_KEY
from chat.service.metrics import Metrics
from chat.service.tracking import MeteredEngine, RequestRecord, Tracker, request_id
from chat.settings import Settings
from chat.store import Store
from chat.voice import build_voice


class Service:
    def __init__(
        self,
        engine: ChatEngine,
        settings: Settings,
        store: Store | None = None,
        *,
        visitor_key: bytes | None = None,
        knowledge: Library | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.store = store  # the conversation store; None with CHAT_STORE=off
        self.metrics = Metrics(engine)
        self.log = AccessLog(fmt=settings.log_format, user_text=settings.log_user_text)
        self.knowledge = knowledge  # the knowledge bases a chat request may name (None: none)
        self.voice = build_voice(settings)  # speech to and from text; nothing loads until used
        self.tracker = Tracker(engine, self.metrics, self.log, knowledge=knowledge)
        # access, limits, queue admission; visitor_key signs anonymous owners' cookies
        self.door = Door(settings, engine, self.tracker, visitor_key=visitor_key)
        self.budget = ThreadBudget()
        self.max_body = settings.max_body_bytes
        windows = [b.context_window() for b in engine.backends.values()]
        self.max_context = min([w for w in windows if w] or [settings.n_ctx])
        self.defaults = GenerationParams.within(self.max_context)

    def observed(self, entry: str) -> MeteredEngine:
        """The engine for another entry point (the Gradio UI), counted under ``entry``."""
        return MeteredEngine(self.tracker, entry)

    def record(self, entry: str, conn: HTTPConnection) -> RequestRecord:
        client = conn.scope.get("state", {}).get(CLIENT_KEY)
        if client is None:  # not through the door (only in unit tests that build a bare scope)
            client = conn.client.host if conn.client else "unknown"
        return RequestRecord(entry, id=request_id(conn.headers.get("x-request-id")), client=client)
