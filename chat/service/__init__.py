"""The service surface beside the Gradio UI: REST, SSE, WebSocket, OpenAI-compatible, metrics.

``register(app, engine, settings)`` adds every route to the FastAPI app (before Gradio is
mounted at ``/``) and returns the ``Service`` they share: one engine, one model, one registry.

    POST /api/chat              JSON reply, or SSE with "stream": true     (chat.service.rest)
    WS   /ws                    one conversation per connection            (chat.service.ws)
    POST /v1/chat/completions   OpenAI-compatible, streaming and not       (chat.service.openai_routes)
    GET  /v1/models
    GET  /metrics               Prometheus text format                     (chat.service.metrics)
    GET  /healthz, /readyz      alive; model loaded and cloud reachable    (chat.service.health)
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from chat.engine import ChatEngine
from chat.service import health, openai_routes, rest, ws
from chat.service.core import Service
from chat.service.errors import ApiError
from chat.service.ratelimit import RateLimitMiddleware
from chat.settings import Settings

__all__ = ["Service", "register"]


def register(app: FastAPI, engine: ChatEngine, settings: Settings) -> Service:
    service = Service(engine, settings)
    app.state.service = service
    health.register(app, service)
    rest.register(app, service)
    ws.register(app, service)
    openai_routes.register(app, service)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        try:
            service.check_token(request)
        except ApiError as exc:
            return exc.response()
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    if service.limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=service.limiter, tracker=service.tracker)
    return service
