"""The words of one turn: what a reply needs (``ReplyRequest``) and the closed set of outcomes it
ends with (``Reply``, ``Refusal``, ``Failure``, ``Cancelled``). See ``chat.reply.pipeline``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from chat.errors import ChatError
from chat.i18n import Lang, detect_language
from chat.messages import (
    GenerationParams,
    Message,
    Notice,
    Stats,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolUse,
    Waiting,
)

if TYPE_CHECKING:
    from chat.knowledge.records import Source
    from chat.store import Store


@dataclass(frozen=True)
class StoredConversation:
    """Where a turn is kept: the owner's conversation ``id`` in ``store``. With ``new``, the
    history the request brought (a client's own) is stored first, so the conversation holds
    everything the model saw."""

    store: Store = field(repr=False, compare=False)
    owner: str
    id: str
    new: bool = False
    key: str | None = None  # the client's key for its message: a resend is stored once (chat.store.resend)


@dataclass(frozen=True, kw_only=True)
class ReplyRequest:
    """What one reply needs: the conversation, its parameters and the caller's choices."""

    messages: Sequence[Message]
    params: GenerationParams
    backend: str | None = None
    use_cache: bool = True
    api_key: str | None = field(default=None, repr=False)  # a session key: never shown
    conversation: StoredConversation | None = None  # keep the user's message and the reply there
    knowledge: str | None = None  # answer from this knowledge base, citing its sources
    # may use the operator's MCP tools (chat.tools); not on /v1, where a client runs its own
    server_tools: bool = True

    @functools.cached_property
    def lang(self) -> Lang:
        """The language of the newest user message, detected once per request: replies, notices
        and errors follow it."""
        return detect_language(self.user_input)

    @property
    def user_input(self) -> str:
        """The newest user message (a client's tool results may follow it)."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")


@dataclass(frozen=True)
class Reply:
    """The reply ended: ``text`` is everything the user saw, ``stats`` its figures."""

    text: str
    stats: Stats
    notices: tuple[Notice, ...] = ()
    sources: tuple[Source, ...] = ()  # the knowledge base chunks the prompt held, best first
    thinking: str = ""  # a reasoning model's thinking, shown apart: not the reply, not stored
    tool_calls: tuple[ToolCall, ...] = ()  # calls the model asked the client to run (/v1)
    tools: tuple[ToolUse, ...] = ()  # the operator's tools the app ran for this reply, in order


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
    thinking: str = ""
    tools: tuple[ToolUse, ...] = ()


Outcome = Reply | Refusal | Failure | Cancelled
Step = TextDelta | ThinkingDelta | Notice | Waiting | ToolUse | Outcome
OUTCOMES = (Reply, Refusal, Failure, Cancelled)
