"""The Backend contract: translate messages into a stream of text, nothing more.

The engine owns guards, caching, retry, fallback and timing; a backend only talks to a model.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from chat.messages import GenerationParams, Message, ThinkingDelta, ToolCall, Waiting


@dataclass(frozen=True)
class Finish:
    """The backend's last item: why generation ended and, when known, exact token counts."""

    reason: str  # "stop", "length", "cancelled", ...
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_prompt_tokens: int | None = None  # prompt tokens reused from a prompt cache, not evaluated


@dataclass(frozen=True)
class BatchStats:
    """A batching backend's state, for /metrics: its slots and the decode steps so far."""

    slots: int  # sequences decoded at once at most
    active: int  # sequences holding a slot now
    waiting: int  # requests waiting for a slot
    steps: int  # decode steps since start
    step_tokens: int  # tokens decoded in those steps (their ratio is the mean batch size)


# ThinkingDelta: a reasoning field apart from the text; ToolCall: a whole call the model asked for
Chunk = str | ThinkingDelta | Waiting | ToolCall | Finish


class Backend(ABC):
    """A model that streams replies. Subclasses set ``name`` ("local", "cloud") and ``model``."""

    name: str = "backend"
    model: str = ""
    exact_token_count: bool = True  # False: counts are estimates, re-fit on a provider overflow
    accepts_time_left: bool = False  # True: ``stream`` takes ``time_left=`` (seconds) as a deadline
    accepts_api_key: bool = False  # True: ``stream`` uses ``api_key=`` (the UI shows a key field)
    # ``response_format`` types ``stream`` honours (``params.response_format``); others get a 400
    response_formats: frozenset[str] = frozenset({"text"})
    base_url: str | None = None  # a remote API's base URL, probed by /readyz; None: in-process
    # True: ``stream`` sends ``params.tools`` to the model and yields ``ToolCall``s; False: the
    # engine renders tools as prompt text and reads calls back (``chat.backends.tool_text``)
    native_tools: bool = False

    @property
    def queue_depth(self) -> int | None:
        """Requests waiting for or holding the model, for backends that queue (else None)."""
        return None

    def batch_stats(self) -> BatchStats | None:
        """Slots and steps of a backend that batches several requests (else None)."""
        return None

    def room_for_background(self) -> bool:
        """True when background work (a summary) can run now without delaying a user."""
        return not self.queue_depth

    def user_waiting(self) -> bool:
        """True when a request waits for the model behind the ones it is serving."""
        return (self.queue_depth or 0) > 1

    def readiness(self) -> str | None:
        """None when the backend can serve; else why not ("model loading", "model closed")."""
        return None

    @abstractmethod
    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        """Yield text deltas (and ``Waiting`` while queued), then one ``Finish``.

        Closing the iterator, or setting ``cancel``, must stop generation and free the model.
        """

    @abstractmethod
    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the prompt for ``messages`` takes (exact where a tokenizer is available)."""

    def message_tokens(self, message: Message) -> int:
        """One message's share of a prompt, for choosing which turns to drop (an estimate is
        fine: the chosen prompt is counted again with ``count_tokens``)."""
        return self.count_tokens([message])

    def prepare(self, cancel: threading.Event | None = None) -> Iterator[Waiting]:
        """Wait until the backend can serve (e.g. a model still loading), yielding progress."""
        return iter(())

    def context_window(self) -> int | None:
        """The hard context limit in tokens, when the backend knows it."""
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release resources (model memory, HTTP connections)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
