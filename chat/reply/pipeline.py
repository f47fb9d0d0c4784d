"""One reply, from request to outcome, for every way in (the page, Gradio's API, REST, SSE,
WebSocket, OpenAI).

``run(engine, request)`` streams the engine's ``Waiting``, ``Notice``, ``TextDelta`` and
``ThinkingDelta`` events, then ends with exactly one outcome from a closed set:

    Reply       the engine finished (stopped, hit the length limit, or was cut off mid-way)
    Refusal     a guard refused the message (``stage="input"``) or stopped the reply (``"output"``)
    Failure     the request failed (a ``ChatError``; anything unexpected is logged and generic)
    Cancelled   Stop, a ``cancel`` message or a closed connection ended it

The protocol modules only encode these steps, so a refusal or an error cannot be handled one way
on ``/api/chat`` and another on ``/v1``. Closing the iterator stops generation and frees the model.

With ``request.conversation`` set, the turn is also kept in the store: the user's message before
generation starts (a failure, Stop or a crash cannot lose it), the reply as it streams, then
marked complete, stopped or interrupted by its outcome (with the sources it cited, in the same
write). A reasoning model's thinking is not kept: it is never context for the next turn, and it
is often longer than the reply itself. The owner's profile (when they opted in) and the summary
of turns that no longer fit go in as system notes after the system prompt, in place of the
summarised turns (``chat.reply.notes``).

With ``request.knowledge`` set, the newest message is first looked up in that knowledge base (one
indexed query; an unknown name fails before anything is stored), the best chunks go into the
prompt as a delimited reference block fitted with the backend's token counts
(``chat.knowledge.context``), and the ``Reply`` lists them as its ``sources``, best first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from chat.engine import ChatEngine
from chat.engine.reasoning import without_thinking
from chat.errors import ChatError, InputBlocked, OutputBlocked
from chat.knowledge.context import Library, Reference, fit_reference, retrieve
from chat.messages import (
    Done,
    Event,
    Message,
    Notice,
    Stats,
    TextDelta,
    ToolUse,
    Waiting,
    system_end,
)
from chat.reply.notes import TurnNotes
from chat.reply.turn import (
    Cancelled,
    Failure,
    Outcome,
    Refusal,
    Reply,
    ReplyRequest,
    Step,
)
from chat.tools.loop import stream_with_tools

if TYPE_CHECKING:
    from chat.knowledge.records import Source
    from chat.store import ReplyWriter
    from chat.store.store import StartedTurn

log = logging.getLogger(__name__)


@dataclass
class _Turn:
    """What one turn has gathered so far, kept whatever step fails: the notices shown, the text
    streamed, the tools run, the stored reply being written, the prompt's parts."""

    request: ReplyRequest
    backend: str
    memory: TurnNotes
    checked: bool = False  # the input guard passed the user's messages
    notices: list[Notice] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    uses: list[ToolUse] = field(default_factory=list)
    writer: ReplyWriter | None = None
    reference: Reference = field(default_factory=lambda: Reference(None, "", (), 0))

    def text(self) -> str:
        return "".join(self.shown)


def run(
    engine: ChatEngine,
    request: ReplyRequest,
    *,
    cancel: threading.Event | None = None,
    knowledge: Library | None = None,
) -> Iterator[Step]:
    """Stream one reply: the engine's events, then exactly one outcome.

    ``cancel`` (set by Stop or a closed connection) ends generation within a token or two;
    ``knowledge`` holds the knowledge bases ``request.knowledge`` may name.
    """
    cancel = cancel or threading.Event()
    turn = _Turn(request, request.backend or engine.default_backend, TurnNotes(list(request.messages)))
    outcome: Outcome | None = None
    events: Iterator[Event] | None = None
    try:
        yield from _assemble(engine, turn, knowledge, cancel)
        events = _events(engine, turn, cancel)
        outcome = yield from _relay(events, turn)
    except (InputBlocked, OutputBlocked) as exc:
        outcome = _refusal(exc, turn)
    except ChatError as exc:
        if cancel.is_set():  # a retry wait or a model load, cut short by Stop
            stats = Stats(backend=turn.backend, finish_reason="cancelled")
            outcome = Cancelled(turn.text(), stats, tuple(turn.notices))
        else:
            outcome = Failure(exc, turn.text(), tuple(turn.notices))
    except Exception:  # noqa: BLE001 - the one seam: a bug is logged in full, the user gets a sentence
        log.exception("unexpected error in a chat reply")
        outcome = Failure(ChatError("unexpected error"), turn.text(), tuple(turn.notices))
    finally:
        cancel.set()  # wakes a backend that is waiting or generating, then close() ends it
        if events is not None:
            events.close()
        if turn.writer is not None and outcome is None:  # closed mid-reply: Stop or a client that left
            _finish_turn(turn.writer, "stopped", turn.text())
    if outcome is None:  # pragma: no cover - the engine always ends with Done or an error
        outcome = Failure(ChatError("the reply ended without a result"), turn.text(), tuple(turn.notices))
    _close(engine, turn, outcome)
    yield outcome


def _assemble(
    engine: ChatEngine, turn: _Turn, knowledge: Library | None, cancel: threading.Event
) -> Iterator[Step]:
    """The turn's prompt, assembled once, in this order: the knowledge base looked up (an unknown
    name fails first), the input guard's one verdict on what the user wrote (before anything is
    stored: a refused message may hold a password), the user's message stored, the profile and
    summary notes, then the reference fitted to the backend that will answer. The engine gets
    the verdict with the prompt and does not judge again."""
    request = turn.request
    found = retrieve(knowledge, request.knowledge, request.user_input) if request.knowledge else []
    asked = _asked(request.messages)
    if asked:
        engine.check_input(asked)
        turn.checked = True
    started = _start_turn(request)
    turn.writer = started.writer if started is not None else None
    turn.memory = TurnNotes.load(request, started)  # profile and summary notes; summarised turns go
    if request.knowledge:  # the note on every such turn (a stable prefix), chunks when found
        turn.reference = yield from _reference(engine, request, found, cancel, turn.memory.notes)


def _asked(messages: Sequence[Message]) -> list[Message]:
    """What the input guard judges: the messages up to the newest user message (tool results
    after it are data), without a reasoning model's thinking; none without a user message (the
    engine then refuses the request as invalid)."""
    messages = without_thinking(messages)
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    return messages[: users[-1] + 1] if users else []


def _relay(events: Iterator[Event], turn: _Turn) -> Generator[Step, None, Outcome | None]:
    """Pass the engine's events on, keeping what the outcome needs; the outcome at ``Done``."""
    for event in events:
        if isinstance(event, Done):  # what the model saw of a cut history: one notice, at the end
            notice = turn.memory.history_notice(turn.request.lang, event.stats.dropped_messages)
            if notice is not None:
                turn.notices.append(notice)
                yield notice
            return _ended(event, tuple(turn.notices), turn.reference.sources, tuple(turn.uses))
        if isinstance(event, Notice):
            if event.kind == "trimmed":  # said once, with the summary's share, at Done
                continue
            turn.notices.append(event)
        elif isinstance(event, ToolUse):
            turn.uses.append(event)
        elif isinstance(event, TextDelta):
            turn.shown.append(event.text)
            if turn.writer is not None:
                turn.writer.append(event.text)
        yield event
    return None


def _refusal(exc: InputBlocked | OutputBlocked, turn: _Turn) -> Refusal:
    stage: Literal["input", "output"] = "input" if isinstance(exc, InputBlocked) else "output"
    category = str(exc.fields.get("category", ""))  # counted on the operator page
    stats = Stats(backend=turn.backend, finish_reason="blocked", extra={"guard_category": category})
    return Refusal(exc.user_message(turn.request.lang), stats, tuple(turn.notices), stage)


def _close(engine: ChatEngine, turn: _Turn, outcome: Outcome) -> None:
    """The stored reply's last write, and a summary of the turns left out (in the background)."""
    if turn.writer is not None:
        sources = outcome.sources if isinstance(outcome, Reply) else ()
        _finish_turn(turn.writer, _status(outcome), outcome.text, sources, getattr(outcome, "tools", ()))
        if not isinstance(outcome, Failure):
            outcome.stats.extra["message_id"] = turn.writer.message_id  # its figures, its rating
    turn.memory.after(engine, turn.request, outcome)


def _events(engine: ChatEngine, turn: _Turn, cancel: threading.Event) -> Iterator[Event]:
    """The engine's events for this turn, through the tool loop when the operator's tools are on
    offer to this conversation (its persona's set, ``chat.tools.registry``)."""
    request, memory, reference = turn.request, turn.memory, turn.reference
    kwargs = {
        "backend": request.backend,
        "cancel": cancel,
        "api_key": request.api_key,
        "notes": [*memory.notes, *([reference.note] if reference.note else [])],
        "reference": reference.block,
        "checked": turn.checked,
    }
    registry = engine.tools if request.server_tools else None
    tools = registry.for_messages(request.messages) if registry is not None else None
    if tools is None:
        use_cache = request.use_cache and request.params.tools is None  # calls are not replayed
        return engine.stream(
            memory.messages, request.params, use_cache=use_cache, lang=request.lang, **kwargs
        )
    rounds = registry.max_rounds
    return stream_with_tools(
        engine,
        memory.messages,
        request.params,
        tools,
        max_rounds=rounds,
        lang=request.lang,
        asked=request.messages,  # an acting call is held under the conversation as sent
        **kwargs,
    )


def _start_turn(request: ReplyRequest) -> StartedTurn | None:
    """Store the user's message and start the reply (a ``streaming`` row), reading the turn's
    notes; ``ChatError`` (``StoreError``, ``ConversationNotFound``) when that fails, before
    anything is generated."""
    conversation = request.conversation
    if conversation is None:
        return None
    store, owner = conversation.store, conversation.owner
    if conversation.new:
        for message in without_thinking(request.messages[:-1]):
            if message.role in ("user", "assistant"):  # a client's own tool results are not kept
                store.add_message(owner, conversation.id, message.role, message.content)
    return store.start_turn(owner, conversation.id, request.user_input, key=conversation.key)


def _status(outcome: Outcome) -> Literal["complete", "stopped", "interrupted"]:
    if isinstance(outcome, Cancelled):
        return "stopped"
    if isinstance(outcome, Failure) or outcome.stats.finish_reason == "error":
        return "interrupted"
    return "complete"


def _finish_turn(
    writer: ReplyWriter,
    status: Literal["complete", "stopped", "interrupted"],
    text: str,
    sources: Sequence[Source] = (),
    tools: Sequence[ToolUse] = (),
) -> None:
    """The reply's last write, with the sources it showed (display-only: ``Store.history`` never
    gives them back to the model); a failing database is logged, never turned into a failed
    reply the user has already read."""
    try:
        sources_ = [source.to_dict() for source in sources]
        writer.finish(status, text=text, sources=sources_, tool_calls=[use.to_dict() for use in tools])
    except ChatError:
        log.warning("reply %s: the final write to the store failed", writer.message_id)


def _reference(
    engine: ChatEngine,
    request: ReplyRequest,
    found: Sequence[Source],
    cancel: threading.Event,
    notes: Sequence[Message] = (),
) -> Iterator[Waiting]:
    """The reference block for ``found``, fitted to the first backend that will answer beside the
    system prompt, the other ``notes`` and the newest message (``yield from`` returns the
    ``Reference``; a model still loading reports its progress meanwhile)."""
    at = system_end(request.messages)
    kept = [*request.messages[:at], *notes, *request.messages[-1:]]  # what fitting never drops
    backend = engine.chain(request.backend)[0]
    yield from backend.prepare(cancel)
    window = request.params.context_length
    hard_limit = backend.context_window()
    if hard_limit is not None:
        window = min(window, hard_limit)
    return fit_reference(
        found,
        knowledge=request.knowledge or "",
        messages=kept,
        window=window,
        max_new_tokens=request.params.max_new_tokens,
        count=backend.count_tokens,
        cost=backend.message_tokens,
        lang=request.lang,
    )


def _ended(
    done: Done, notices: tuple[Notice, ...], sources: tuple[Source, ...] = (), uses: tuple[ToolUse, ...] = ()
) -> Outcome:
    match done.stats.finish_reason:
        case "blocked":
            return Refusal(done.text, done.stats, notices, "output")
        case "cancelled":
            return Cancelled(done.text, done.stats, notices, thinking=done.thinking, tools=uses)
    return Reply(
        done.text,
        done.stats,
        notices,
        sources,
        thinking=done.thinking,
        tool_calls=done.tool_calls,
        tools=uses,
    )


class Pipeline:
    """The reply pipeline over one engine; the service's tracked version adds metrics and logs.

    >>> for step in Pipeline(engine).run(ReplyRequest(messages=[Message("user", "Hi")], params=p)):
    ...     print(step)
    """

    def __init__(self, engine: ChatEngine, *, knowledge: Library | None = None) -> None:
        self.engine = engine
        self.knowledge = knowledge

    def run(self, request: ReplyRequest, *, cancel: threading.Event | None = None) -> Iterator[Step]:
        return run(self.engine, request, cancel=cancel, knowledge=self.knowledge)
