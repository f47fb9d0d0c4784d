"""One reply, from request to outcome, for every way in (the page, Gradio's API, REST, SSE,
WebSocket, OpenAI).

``run(engine, request)`` streams the engine's ``Waiting``, ``Notice`` and ``TextDelta`` events,
then ends with exactly one outcome from a closed set:

    Reply       the engine finished (stopped, hit the length limit, or was cut off mid-way)
    Refusal     a guard refused the message (``stage="input"``) or stopped the reply (``"output"``)
    Failure     the request failed (a ``ChatError``; anything unexpected is logged and generic)
    Cancelled   Stop, a ``cancel`` message or a closed connection ended it

The protocol modules only encode these steps, so a refusal or an error cannot be handled one way
on ``/api/chat`` and another on ``/v1``. Closing the iterator stops generation and frees the model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from chat.engine import ChatEngine
from chat.errors import ChatError, InputBlocked, OutputBlocked
from chat.i18n import Lang, detect_language
from chat.messages import Done, Event, GenerationParams, Message, Notice, Stats, TextDelta, Waiting

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ReplyRequest:
    """What one reply needs: the conversation, its parameters and the caller's choices."""

    messages: Sequence[Message]
    params: GenerationParams
    backend: str | None = None
    use_cache: bool = True
    api_key: str | None = field(default=None, repr=False)  # a session key: never shown

    @property
    def lang(self) -> Lang:
        """The language of the newest message: replies, notices and errors follow it."""
        return detect_language(self.messages[-1].content) if self.messages else "en"

    @property
    def user_input(self) -> str:
        return self.messages[-1].content if self.messages else ""


@dataclass(frozen=True)
class Reply:
    """The reply ended: ``text`` is everything the user saw, ``stats`` its figures."""

    text: str
    stats: Stats
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """A guard said no: ``text`` is the refusal in the user's language, and it is the answer."""

    text: str
    stats: Stats
    notices: tuple[Notice, ...] = ()
    stage: Literal["input", "output"] = "input"


@dataclass(frozen=True)
class Failure:
    """The request failed; ``text`` is what had been shown before it did."""

    error: ChatError
    text: str = ""
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class Cancelled:
    """Stopped before the end; ``text`` is what had been shown."""

    text: str
    stats: Stats
    notices: tuple[Notice, ...] = ()


Outcome = Reply | Refusal | Failure | Cancelled
Step = TextDelta | Notice | Waiting | Outcome
OUTCOMES = (Reply, Refusal, Failure, Cancelled)


def run(
    engine: ChatEngine, request: ReplyRequest, *, cancel: threading.Event | None = None
) -> Iterator[Step]:
    """Stream one reply: the engine's events, then exactly one outcome.

    ``cancel`` (set by Stop or a closed connection) ends generation within a token or two.
    """
    cancel = cancel or threading.Event()
    backend = request.backend or engine.default_backend
    notices: list[Notice] = []
    shown: list[str] = []
    outcome: Outcome | None = None
    events: Iterator[Event] | None = None
    try:
        events = engine.stream(
            list(request.messages),
            request.params,
            backend=request.backend,
            cancel=cancel,
            use_cache=request.use_cache,
            api_key=request.api_key,
        )
        for event in events:
            if isinstance(event, Done):
                outcome = _ended(event, tuple(notices))
                break
            if isinstance(event, Notice):
                notices.append(event)
            elif isinstance(event, TextDelta):
                shown.append(event.text)
            yield event
    except (InputBlocked, OutputBlocked) as exc:
        stage: Literal["input", "output"] = "input" if isinstance(exc, InputBlocked) else "output"
        stats = Stats(backend=backend, finish_reason="blocked")
        outcome = Refusal(exc.user_message(request.lang), stats, tuple(notices), stage)
    except ChatError as exc:
        if cancel.is_set():  # a retry wait or a model load, cut short by Stop
            outcome = Cancelled(
                "".join(shown), Stats(backend=backend, finish_reason="cancelled"), tuple(notices)
            )
        else:
            outcome = Failure(exc, "".join(shown), tuple(notices))
    except Exception:  # noqa: BLE001 - the one seam: a bug is logged in full, the user gets a sentence
        log.exception("unexpected error in a chat reply")
        outcome = Failure(ChatError("unexpected error"), "".join(shown), tuple(notices))
    finally:
        cancel.set()  # wakes a backend that is waiting or generating, then close() ends it
        if events is not None:
            events.close()
    if outcome is None:  # pragma: no cover - the engine always ends with Done or an error
        outcome = Failure(ChatError("the reply ended without a result"), "".join(shown), tuple(notices))
    yield outcome


def _ended(done: Done, notices: tuple[Notice, ...]) -> Outcome:
    match done.stats.finish_reason:
        case "blocked":
            return Refusal(done.text, done.stats, notices, "output")
        case "cancelled":
            return Cancelled(done.text, done.stats, notices)
    return Reply(done.text, done.stats, notices)


class Pipeline:
    """The reply pipeline over one engine; the service's tracked version adds metrics and logs.

    >>> for step in Pipeline(engine).run(ReplyRequest(messages=[Message("user", "Hi")], params=p)):
    ...     print(step)
    """

    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine

    def run(self, request: ReplyRequest, *, cancel: threading.Event | None = None) -> Iterator[Step]:
        return run(self.engine, request, cancel=cancel)
