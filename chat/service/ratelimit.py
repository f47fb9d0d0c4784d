"""Per-client rate limiting with the ``limits`` library: N chat requests per minute per client.

A client is its address as uvicorn reports it (behind nginx that is ``X-Forwarded-For`` from a
trusted proxy: set ``FORWARDED_ALLOW_IPS``). Only requests that start a reply count: the REST,
OpenAI and Gradio chat calls (through ``RateLimitMiddleware``) and each ``/ws`` message. Over
the limit the answer is 429 with ``Retry-After``, so one visitor cannot starve the others.
"""

from __future__ import annotations

import json
import math
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from chat.service.errors import ApiError
from chat.service.tracking import RequestRecord, Tracker, request_id

# POST paths that start a reply -> the entry point they belong to
LIMITED_PATHS = {
    "/api/chat": "rest",
    "/v1/chat/completions": "openai",
    "/gradio_api/queue/join": "gradio",
}
LIMITED_PREFIXES = {"/gradio_api/call/": "gradio"}


class ClientLimiter:
    """A moving one-minute window per client key, kept in this process's memory.

    Replicas behind nginx with sticky sessions each see all of one client's requests, so the
    per-replica window is the client's window.
    """

    def __init__(self, per_minute: int) -> None:
        # Imported here: ``limits`` takes ~0.1 s to import, and most installs never turn it on.
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, client: str) -> int | None:
        """Count one request; ``None`` if allowed, else the seconds until one is allowed again."""
        if self._limiter.hit(self._item, "chat", client):
            return None
        reset = self._limiter.get_window_stats(self._item, "chat", client).reset_time
        return max(1, math.ceil(reset - time.time()))

    def error(self, retry_after: int) -> ApiError:
        return ApiError(
            429,
            "rate_limited",
            f"too many requests: the limit is {self.per_minute} per minute per client; "
            f"try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def limited_entry(method: str, path: str) -> str | None:
    if method != "POST":
        return None
    entry = LIMITED_PATHS.get(path.rstrip("/") or "/")
    if entry is None:
        entry = next((e for prefix, e in LIMITED_PREFIXES.items() if path.startswith(prefix)), None)
    return entry


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class RateLimitMiddleware:
    """Answers 429 before a chat request reaches its route (the Gradio ones included)."""

    def __init__(self, app: ASGIApp, limiter: ClientLimiter, tracker: Tracker) -> None:
        self.app = app
        self.limiter = limiter
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = (
            limited_entry(scope.get("method", ""), scope.get("path", "")) if scope["type"] == "http" else None
        )
        if entry is not None:
            client = client_of(scope)
            wait = self.limiter.hit(client)
            if wait is not None:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                record = RequestRecord(entry, id=request_id(headers.get("x-request-id")), client=client)
                self.tracker.reject(record, "rate_limited", 429)
                error = self.limiter.error(wait)
                body = error.body(record.id)
                if entry == "gradio":
                    body["detail"] = error.message  # what Gradio's front end shows
                await _send_json(send, 429, body, {**error.headers, "X-Request-ID": record.id})
                return
        await self.app(scope, receive, send)


async def _send_json(send: Send, status: int, body: dict, headers: dict[str, str]) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
