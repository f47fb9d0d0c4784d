"""Plain values the store hands out: no database session travels with them, so they are safe to
pass between threads and to turn into JSON (``to_dict``) for the APIs and the export."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from chat.common.plain import plain_dict
from chat.messages import Message, Role

Status = Literal["complete", "streaming", "stopped", "interrupted"]
STATUSES: tuple[Status, ...] = ("complete", "streaming", "stopped", "interrupted")
"""complete: the reply ended normally; streaming: being written now; stopped: the user stopped it;
interrupted: it failed, or the server died while writing it (marked by any live replica once the
dead writer's lease ran out, ``chat.store.leases``)."""


def _iso(value: datetime) -> str:
    return value.isoformat()


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: Role
    content: str
    status: Status
    created_at: datetime
    updated_at: datetime
    rating: int | None = None
    # The knowledge-base passages an answer used, best first (``Source.to_dict``): shown under
    # the reply, never sent back to the model (``to_message`` leaves them out).
    sources: tuple[dict[str, Any], ...] = ()
    # The operator's tools the app ran for the reply (``ToolUse.to_dict``), shown, never sent back.
    tool_calls: tuple[dict[str, Any], ...] = ()

    def to_message(self) -> Message:
        return Message(self.role, self.content)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "rating": self.rating,
            "sources": [dict(source) for source in self.sources],  # as /api/chat's "sources"
            "tool_calls": [dict(call) for call in self.tool_calls],  # as /api/chat's "tool_calls"
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class ConversationInfo:
    """One entry of the conversation list."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class Conversation(ConversationInfo):
    """A conversation with every message, oldest first."""

    summary: str = ""
    messages: tuple[StoredMessage, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "summary": self.summary,
            "messages": [m.to_dict() for m in self.messages],
        }


@dataclass(frozen=True, kw_only=True)
class Profile:
    """What the assistant may know about its owner; used in the system prompt only if ``opt_in``."""

    display_name: str = ""
    language: str = ""
    persona: str = ""
    notes: str = ""
    opt_in: bool = False

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)
