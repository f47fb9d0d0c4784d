"""Helpers for the service tests: an app served for real, a word-list guard, a dict cache, SSE.

The guard and cache implement the engine's ``InputGuard`` and ``ResponseCache`` protocols with a
few lines, so these tests exercise the service's handling of refusals and cache hits without
depending on the rules shipped in ``chat.guards``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from support import free_port

from chat import ChatEngine, InputBlocked, Settings
from chat.backends.base import Backend
from chat.messages import GenerationParams, Message

BLOCKED_WORD = "zebrafruit"  # a word the test guard refuses


class WordGuard:
    """Refuses any user message that contains ``BLOCKED_WORD``."""

    def check(self, messages: Sequence[Message], *, moderate: bool = True) -> None:
        if any(m.role == "user" and BLOCKED_WORD in m.content for m in messages):
            raise InputBlocked("word list")


class DictCache:
    def __init__(self) -> None:
        self.store: dict[str, str] = {}

    def key(
        self, backend: Backend, messages: Sequence[Message], params: GenerationParams, *, salt: str = ""
    ) -> str:
        raw = json.dumps([backend.name, [m.to_dict() for m in messages], repr(params), salt])
        return hashlib.sha256(raw.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        return self.store.get(key)

    def put(self, key: str, text: str) -> None:
        self.store[key] = text


def service_engine(backend: Backend) -> ChatEngine:
    return ChatEngine({"local": backend}, input_guard=WordGuard(), cache=DictCache())


@contextmanager
def serve(engine: ChatEngine, *, full: bool = True, **settings: Any) -> Iterator[str]:
    """Serve ``engine`` with uvicorn on a free port; the whole app, or only the service routes."""
    from fastapi import FastAPI

    from chat.server import Server, build_app
    from chat.service import register

    config = Settings(n_ctx=2048, port=free_port(), **settings)
    if full:
        app = build_app(engine, config)
    else:
        app = FastAPI()
        register(app, engine, config)
    server = Server(app, host="127.0.0.1", port=config.port)
    server.start()
    try:
        yield server.local_url
    finally:
        server.stop()


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) pairs from server-sent event lines; comments are skipped."""
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        yield name, "\n".join(data)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def scrape(base_url: str, **headers: str) -> str:
    response = httpx.get(base_url + "metrics", headers=headers, timeout=10)
    response.raise_for_status()
    return response.text
