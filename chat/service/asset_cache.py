"""Gradio's page assets served from memory after their first request, and kept by browsers.

Gradio serves its JavaScript, style sheets and fonts (``/assets/...``, ``/static/...``) from the
installed package and compresses each response again on every request: a page load asks for 85 of
them, about 0.3 s of a core per new visitor, and sends no ``Cache-Control``, so a returning visitor
asks again. They change only when Gradio is upgraded, which restarts the process. So the first
response for each path, ``Accept-Encoding`` and ``Origin`` is kept (compressed, within a memory
bound) and replayed, a browser revalidating its copy gets a 304, and browsers are told they may
keep the files: for a year under ``/assets/``, whose names carry a content hash, and for a day
under ``/static/``.

The cache sits inside the door (``chat.service.door.access``): every request still passes its checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# path prefix -> what browsers are told
BROWSER_CACHING = {
    "/assets/": b"public, max-age=31536000, immutable",  # hashed names: a new build, a new name
    "/static/": b"public, max-age=86400",  # Gradio's fonts and scripts, names without a hash
}
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # a page's 85 assets took 0.5 MB (Brotli), per encoding
MAX_ENTRY_BYTES = 8 * 1024 * 1024  # a larger file is served as Gradio serves it, every time
ENTRY_OVERHEAD = 512  # bytes counted for an entry's key and headers
# What a 304 repeats of the kept response
_VALIDATORS = (b"etag", b"last-modified", b"cache-control", b"vary")


@dataclass(frozen=True)
class _Response:
    """A kept 200 response (only those are kept)."""

    headers: list[tuple[bytes, bytes]]
    body: bytes


class AssetCache:
    """ASGI middleware: ``app.add_middleware(AssetCache)``, added before the door so that it
    runs inside it (Starlette wraps later middleware around earlier)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.app = app
        self._responses: LRUCache[tuple[str, bytes, bytes], _Response] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda response: len(response.body) + ENTRY_OVERHEAD
        )
        self._largest = min(MAX_ENTRY_BYTES, max_bytes - ENTRY_OVERHEAD)  # LRUCache refuses more
        self.hits = 0
        self.misses = 0

    @property
    def bytes(self) -> int:
        return int(self._responses.currsize)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = _browser_caching(scope)
        if policy is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if b"range" in headers:  # a part of a file: Gradio's ranged response
            await self.app(scope, receive, _with_header(send, policy))
            return
        # Gradio's CORS middleware answers by Origin, and its compression by Accept-Encoding
        key = (scope["path"], headers.get(b"accept-encoding", b"").strip(), headers.get(b"origin", b""))
        kept = self._responses.get(key)
        if kept is not None:  # the event loop's thread only: no lock needed
            self.hits += 1
            status, reply, body = 200, kept.headers, kept.body
            if _unchanged(headers, kept):  # a browser revalidating its copy (Gradio sends it all)
                status, reply, body = 304, [(k, v) for k, v in kept.headers if k.lower() in _VALIDATORS], b""
            await send({"type": "http.response.start", "status": status, "headers": reply})
            await send({"type": "http.response.body", "body": body})
            return
        self.misses += 1
        await self.app(scope, receive, _with_header(self._recording(key, send), policy))

    def _recording(self, key: tuple[str, bytes, bytes], send: Send) -> Send:
        """``send``, keeping a whole 200 response without cookies once its last byte has gone."""
        start: Message | None = None
        body: list[bytes] = []
        size = 0

        async def record(message: Message) -> None:
            nonlocal start, size
            await send(message)
            if message["type"] == "http.response.start":
                cookie = any(name.lower() == b"set-cookie" for name, _ in message.get("headers", []))
                start = message if message["status"] == 200 and not cookie else None
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                size += len(body[-1])
                if size > self._largest:
                    start = None
                elif not message.get("more_body", False):
                    self._responses[key] = _Response(list(start.get("headers", [])), b"".join(body))
            else:  # another kind of message (a server extension): not kept
                start = None

        return record


def _browser_caching(scope: Scope) -> bytes | None:
    """The Cache-Control for a GET of a Gradio asset, None for any other request."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    return next((policy for prefix, policy in BROWSER_CACHING.items() if path.startswith(prefix)), None)


def _unchanged(request: dict[bytes, bytes], kept: _Response) -> bool:
    """The request's validators match the kept response (If-None-Match wins, as in RFC 9110)."""
    response = {k.lower(): v for k, v in kept.headers}
    if b"if-none-match" in request:
        etag = response.get(b"etag")
        tags = [t.strip().removeprefix(b"W/") for t in request[b"if-none-match"].split(b",")]
        return etag is not None and (b"*" in tags or etag.removeprefix(b"W/") in tags)
    since = request.get(b"if-modified-since")
    return since is not None and since == response.get(b"last-modified")


def _with_header(send: Send, policy: bytes) -> Send:
    """``send`` with Cache-Control set on a successful response (Gradio sets none)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] in (200, 304):
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
            message = {**message, "headers": [*headers, (b"cache-control", policy)]}
        await send(message)

    return sending
