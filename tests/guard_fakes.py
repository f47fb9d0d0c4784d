"""Backends for guard and cache tests.

``SpyBackend`` is the real model with a call counter and a record of its prompts.
``ScriptedBackend`` is a fake, used only for what the real model cannot produce on demand: a
given phrase split across given chunks, or a failure after some text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from chat.backends.base import Backend, Chunk, Finish
from chat.errors import Unavailable
from chat.messages import GenerationParams, Message


class SpyBackend(Backend):
    """Delegates to a real backend; counts the requests that reach it and keeps their prompts.

    With ``reply``, those chunks answer instead of ``inner``, which still counts every token:
    for tests about the prompt the model gets, not what it says (no prompt is evaluated)."""

    def __init__(self, inner: Backend, *, reply: Sequence[str] | None = None) -> None:
        self.inner = inner
        self.reply = reply
        self.name = inner.name
        self.model = inner.model
        self.calls = 0
        self.prompts: list[list[Message]] = []
        self._lock = threading.Lock()

    @property
    def queue_depth(self) -> int | None:
        return self.inner.queue_depth

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        with self._lock:
            self.calls += 1
            self.prompts.append(list(messages))
        if self.reply is not None:
            return self._scripted(messages)
        return self.inner.stream(messages, params, cancel=cancel, api_key=api_key)

    def _scripted(self, messages: Sequence[Message]) -> Iterator[Chunk]:
        yield from self.reply
        yield Finish("stop", prompt_tokens=self.inner.count_tokens(messages))

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.inner.count_tokens(messages)

    def message_tokens(self, message: Message) -> int:
        return self.inner.message_tokens(message)

    def context_window(self) -> int | None:
        return self.inner.context_window()


class ScriptedBackend(Backend):
    """Streams fixed chunks; records how far the consumer read and whether it closed the stream."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, chunks: Sequence[str], *, finish: str = "stop", fail_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.finish = finish
        self.fail_after = fail_after
        self.calls = 0
        self.sent = 0
        self.closed = False

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        self.calls += 1
        self.sent = 0
        self.closed = False
        try:
            for i, chunk in enumerate(self.chunks):
                if self.fail_after is not None and i == self.fail_after:
                    raise Unavailable("connection reset", backend=self.name)
                self.sent += 1
                yield chunk
            yield Finish(self.finish)
        finally:
            self.closed = True

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content) // 4 + 4 for m in messages)
