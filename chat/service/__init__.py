"""The service surface beside the Gradio UI: REST, SSE, WebSocket, OpenAI-compatible, metrics.

``register(app, engine, settings)`` adds every route to the FastAPI app (before Gradio is
mounted at ``/``) and returns the ``Service`` they share: one engine, one model, one registry.

    POST /api/chat              JSON reply, or SSE with "stream": true     (chat.service.rest)
    WS   /ws                    one conversation per connection            (chat.service.ws)
    GET/PATCH/DELETE /api/conversations[/{id}], GET /api/me/export   the caller's stored
                                conversations                              (chat.service.conversations)
    GET /api/knowledge, GET/POST /api/knowledge/{name}/documents, DELETE .../documents/{id}
                                the operator's documents                   (chat.service.knowledge)
    POST /v1/chat/completions   OpenAI-compatible, streaming and not       (chat.service.openai_routes)
    GET  /v1/models
    POST /v1/audio/transcriptions, /v1/audio/speech   OpenAI-compatible voice  (chat.service.audio_routes)
    GET  /metrics               Prometheus text format                     (chat.service.metrics)
    GET  /healthz, /readyz      alive; model loaded and cloud reachable    (chat.service.health)

Access, limits and queue admission are not in any route: the door (``chat.service.door.access``)
applies them to every request first, Gradio's own routes included.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from chat.engine import ChatEngine
from chat.knowledge.context import Library
from chat.service import admin as admin_routes
from chat.service import audio_routes, conversations, health, openai_routes, rest, ws
from chat.service import knowledge as knowledge_routes
from chat.service.door.access import DoorMiddleware
from chat.service.shared import Service
from chat.settings import Settings
from chat.store import Store

__all__ = ["Service", "register"]


def register(
    app: FastAPI,
    engine: ChatEngine,
    settings: Settings,
    store: Store | None = None,
    *,
    visitor_key: bytes | None = None,
    knowledge: Library | None = None,
) -> Service:
    """``store``: the conversation store (None: off); ``visitor_key`` signs anonymous owners'
    cookies (``chat.service.conversations.visitor_key``; None: a new key per process);
    ``knowledge``: the knowledge bases a chat request may name (None: none)."""
    service = Service(engine, settings, store, visitor_key=visitor_key, knowledge=knowledge)
    app.state.service = service
    health.register(app, service)
    rest.register(app, service)
    conversations.register(app, service)
    knowledge_routes.register(app, service)
    admin_routes.register(app, service)
    ws.register(app, service)
    openai_routes.register(app, service)
    audio_routes.register(app, service, service.voice)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    # One door before every route, the Gradio app mounted later included (chat.service.door.access).
    service.door.attach(app)
    app.add_middleware(DoorMiddleware, door=service.door)
    return service
