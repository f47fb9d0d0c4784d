"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can serve a reply).

Ready means every local model is loaded and, when the cloud backend is the primary one, its API
answers (``GET {base_url}/models``, any status below 500 other than 401/403). The cloud probe
is cached for a few seconds, so a load balancer polling every second does not become traffic.
With ``CHAT_REDIS_URL``, ``redis`` says whether Redis answers; while it does not, the status is
``degraded`` and still 200: the replica serves, with limits and cache of its own.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from starlette.responses import JSONResponse

from chat.backends.base import Backend
from chat.redis_link import shared_link
from chat.service.shared import Service

PROBE_TIMEOUT = 3.0
PROBE_TTL = 5.0


class CloudProbe:
    def __init__(self, api_key: str = "") -> None:
        self._api_key = api_key
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def check(self, base_url: str) -> dict[str, Any]:
        cached = self._cache.get(base_url)
        if cached and time.monotonic() - cached[0] < PROBE_TTL:
            return cached[1]
        result = await self._probe(base_url)
        self._cache[base_url] = (time.monotonic(), result)
        return result

    async def _probe(self, base_url: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
                response = await client.get(base_url.rstrip("/") + "/models", headers=headers)
        except httpx.HTTPError as exc:
            return {"ready": False, "reason": f"unreachable ({type(exc).__name__})"}
        if response.status_code in (401, 403):
            return {"ready": False, "reason": f"credentials rejected ({response.status_code})"}
        if response.status_code >= 500:
            return {"ready": False, "reason": f"server error ({response.status_code})"}
        return {"ready": True}


def local_ready(backend: Backend) -> dict[str, Any]:
    """Loaded: a backend still downloading or loading its model, or closed, says why not."""
    reason = backend.readiness()
    return {"ready": True} if reason is None else {"ready": False, "reason": reason}


def register(app: FastAPI, service: Service) -> None:
    probe = CloudProbe(service.settings.api_key)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready: models loaded, and the primary cloud API reachable."""
        engine = service.engine
        backends: dict[str, Any] = {}
        ready = True
        for name, backend in engine.backends.items():
            primary = name == engine.default_backend
            if backend.base_url is not None:
                state = await probe.check(backend.base_url) if primary else {"ready": True, "checked": False}
            else:
                state = local_ready(backend)
            backends[name] = {"model": backend.model, "primary": primary, **state}
            ready = ready and state["ready"]
        body = {"status": "ready" if ready else "not ready", "backends": backends}
        if service.settings.redis_url:
            body["redis"] = await anyio.to_thread.run_sync(shared_link(service.settings.redis_url).status)
            if ready and not body["redis"]["reachable"]:
                body["status"] = "degraded"
        return JSONResponse(body, status_code=200 if ready else 503)
