"""Plain values that travel through the engine: messages, generation parameters and events.

The engine yields a closed set of event types, so the UI, the HTTP APIs and the tests all see a
stop, an error, a notice or a cache hit the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from chat.errors import InvalidRequest

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for: ``arguments`` is JSON text, as the model wrote it."""

    id: str
    name: str
    arguments: str = "{}"

    @classmethod
    def from_dict(cls, data: Any) -> ToolCall:
        """From OpenAI's ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
        function = data.get("function") if isinstance(data, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", "{}") if isinstance(function, dict) else None
        if not isinstance(name, str) or not isinstance(data.get("id"), str) or not isinstance(arguments, str):
            raise InvalidRequest(reason="invalid.tool_call")
        return cls(data["id"], name, arguments)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Message:
    """One chat message. Equal content means equal objects, so messages work as cache keys.

    An assistant message may carry the ``tool_calls`` it asked for; a ``tool`` message is one
    call's result and names the call it answers (``tool_call_id``)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        """Build from an OpenAI-style dict, or a Gradio one whose content is a list of parts."""
        if not isinstance(data, dict):
            raise InvalidRequest(reason="invalid.message_object", kind=type(data).__name__)
        role = data.get("role")
        if role not in ROLES:
            raise InvalidRequest(reason="invalid.message_role", roles=", ".join(ROLES), role=repr(role))
        calls = data.get("tool_calls") if role == "assistant" else None
        if calls is not None and not isinstance(calls, list):
            raise InvalidRequest(reason="invalid.tool_call")
        call_id = data.get("tool_call_id", "") if role == "tool" else ""
        if role == "tool" and (not isinstance(call_id, str) or not call_id):
            raise InvalidRequest(reason="invalid.tool_call_id")
        tool_calls = tuple(ToolCall.from_dict(c) for c in calls or ())
        return cls(role, content_text(data.get("content")), tool_calls, call_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


def system_end(messages: Sequence[Message]) -> int:
    """Where the leading system messages end: the index of the first other message (the length
    when there is none). Notes go in here, after the system prompt."""
    return next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))


def last_user(messages: Sequence[Message]) -> int:
    """The index of the newest user message (the results of tool calls may follow it)."""
    return max(i for i, m in enumerate(messages) if m.role == "user")


def content_text(content: Any) -> str:
    """Flatten message content to text: a string, or a list of ``{"type": "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part)
            for part in content
            if not isinstance(part, dict) or part.get("type", "text") == "text"
        )
    if isinstance(content, dict) and "text" in content:
        return str(content["text"])
    raise InvalidRequest(reason="invalid.not_text", field="message content", kind=type(content).__name__)


@dataclass(frozen=True)
class Limit:
    low: float
    high: float
    integer: bool = False


@dataclass(frozen=True, kw_only=True)
class GenerationParams:
    """Sampling and context settings for one reply. Validated on construction."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    context_length: int = 4096
    seed: int | None = None
    # OpenAI's ``response_format`` as canonical JSON text (None: free text), so params stay
    # hashable and the response cache key covers it; built by ``chat.backends.local.grammars``.
    response_format: str | None = None
    # The tools offered and OpenAI's ``tool_choice``, as canonical JSON text (None: no tools);
    # built by ``chat.backends.tool_offer``.
    tools: str | None = None

    LIMITS = {
        "temperature": Limit(0.0, 2.0),
        "top_p": Limit(0.0, 1.0),
        "max_new_tokens": Limit(1, 8192, integer=True),
        "context_length": Limit(64, 131072, integer=True),
    }

    @classmethod
    def within(cls, window: int) -> GenerationParams:
        """The defaults every way in starts from (the page, its API, REST, /ws), the context
        length capped at ``window``, the loaded model's."""
        defaults = cls()
        return replace(defaults, context_length=min(defaults.context_length, window))

    def __post_init__(self) -> None:
        for f in fields(self):
            limit = self.LIMITS.get(f.name)
            if limit is None:
                continue
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _checked(f.name, value, limit))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidRequest(reason="invalid.seed", value=repr(self.seed))
        if self.response_format is not None and not isinstance(self.response_format, str):
            raise InvalidRequest("response_format must be JSON text (see chat.backends.local.grammars)")
        if self.tools is not None and not isinstance(self.tools, str):
            raise InvalidRequest("tools must be JSON text (see chat.backends.tool_offer)")


def _checked(name: str, value: Any, limit: Limit) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(reason="invalid.number", name=name, kind=type(value).__name__, value=repr(value))
    if math.isnan(value) or not limit.low <= value <= limit.high:
        raise InvalidRequest(
            reason="invalid.range", name=name, low=f"{limit.low:g}", high=f"{limit.high:g}", value=repr(value)
        )
    if limit.integer:
        if value != int(value):
            raise InvalidRequest(reason="invalid.whole", name=name, value=repr(value))
        return int(value)
    return float(value)


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    """New reply text, ready to show."""

    text: str


@dataclass(frozen=True)
class ThinkingDelta:
    """New "thinking" text of a reasoning model (``<think>`` blocks, ``reasoning_content``):
    shown apart from the reply, never part of it, never sent back to the model."""

    text: str


@dataclass(frozen=True)
class Notice:
    """Something the user should know about this reply (trimmed history, a fallback, a cut stream)."""

    kind: str
    text: str


@dataclass(frozen=True)
class Waiting:
    """The request waits: queued behind others (``position`` 1 means next), or for the model
    to finish loading (``position`` 0, ``status`` says what is happening)."""

    position: int
    status: str = ""


@dataclass
class Stats:
    """Per-reply figures for the stats line."""

    backend: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token: float | None = None
    total_time: float = 0.0
    tokens_per_second: float | None = None
    finish_reason: str = ""
    dropped_messages: int = 0
    cached_prompt_tokens: int | None = None  # prompt tokens reused from the prompt cache
    evaluated_prompt_tokens: int | None = None  # prompt tokens the model evaluated for this reply
    from_cache: bool = False
    fallback: bool = False
    retries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolUse:
    """A tool the app ran for the model: its ``name`` as people read it ("shop.get_order_status"),
    the arguments (JSON text), the result as shown (masked, guarded), how the call ended
    (``status``: ok, error, timeout, unavailable, unknown, invalid, blocked, cancelled, declined)
    and how long it took, in seconds."""

    id: str
    name: str
    arguments: str
    result: str
    status: str
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Done:
    """The reply ended. ``text`` is the full reply the user saw; ``thinking`` what the model
    thought before it (shown apart, not part of it); ``tool_calls`` the calls the model asked for
    and nobody has run yet."""

    text: str
    stats: Stats
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


Event = TextDelta | ThinkingDelta | Notice | Waiting | ToolUse | Done
