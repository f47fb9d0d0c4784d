"""What the engine asks of the parts it is given: an input guard, an output guard and its
filters, a response cache. Guards and caches implement these without importing the engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chat.backends.base import Backend
from chat.messages import GenerationParams, Message


class InputGuard(Protocol):
    def check(self, messages: Sequence[Message], *, moderate: bool = True) -> None:
        """Raise ``InputBlocked`` (or ``InvalidRequest`` for limits) to refuse the request.

        ``moderate=False`` skips any external moderation call (local rules and limits only)."""


class OutputFilter(Protocol):
    def feed(self, text: str) -> str:
        """Take new text; return the part safe to release. Raise ``OutputBlocked`` on a hit."""

    def flush(self) -> str:
        """The end of the stream: return whatever is still held back."""


class OutputGuard(Protocol):
    def new_filter(self) -> OutputFilter: ...


class ResponseCache(Protocol):
    def key(
        self, backend: Backend, messages: Sequence[Message], params: GenerationParams, *, salt: str = ""
    ) -> str: ...
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, text: str) -> None: ...
