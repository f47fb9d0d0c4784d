"""Writing one assistant reply into the store while it streams.

The reply row exists (``streaming``) before the first token. Text is written at most once per
``interval`` (a second by default) as deltas arrive, and once more at the end with the final
status, so a server killed mid-reply leaves everything but the last second's text, which a live
replica marks ``interrupted`` once the dead writer's lease runs out (``chat.store.leases``). A failed intermediate write is logged and retried at the next one;
it never breaks the reply the user is watching.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from chat.store.errors import StoreError
from chat.store.records import STATUSES, Status
from chat.store.tables import messages, utcnow

if TYPE_CHECKING:
    from chat.store.leases import Leases

log = logging.getLogger(__name__)

_UPDATE = (  # built once: the statement a streaming reply runs every second
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("message_id"))
    .values(
        content=sa.bindparam("text"),
        status=sa.bindparam("status"),
        updated_at=sa.bindparam("now"),
        lease_until=sa.bindparam("until"),
    )
)
_FINISH_WITH_EXTRAS = _UPDATE.values(  # the final write of a reply that used sources or tools
    sources=sa.bindparam("sources", type_=messages.c.sources.type),
    tool_calls=sa.bindparam("tool_calls", type_=messages.c.tool_calls.type),
)


class ReplyWriter:
    """Use as a context manager around the stream::

        with store.reply_writer(owner, conversation_id) as writer:
            for event in engine.stream(...):
                if isinstance(event, TextDelta):
                    writer.append(event.text)
                elif isinstance(event, Done):
                    writer.finish("complete", text=event.text)

    Leaving the block without ``finish`` marks the reply complete; on ``GeneratorExit`` (Stop, a
    closed tab) or ``KeyboardInterrupt`` stopped; on any other exception interrupted.
    """

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[sa.Connection]],
        message_id: int,
        *,
        interval: float,
        clock: Callable[[], float],
        leases: Leases,
    ) -> None:
        self.message_id = message_id
        self.failed_writes = 0
        self._transaction = transaction
        self._interval = interval
        self._clock = clock
        self._parts: list[str] = []
        self._written = clock()
        self._status: Status = "streaming"
        self._sources: list[dict[str, Any]] | None = None  # written by the final write only
        self._tool_calls: list[dict[str, Any]] | None = None  # likewise
        self._gone = False  # the conversation was deleted meanwhile: nothing left to write into
        self._leases = leases
        leases.hold(self)  # renewed while it streams, even before its first token

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def status(self) -> Status:
        return self._status

    def append(self, delta: str) -> None:
        if self._status != "streaming":
            raise RuntimeError("the reply is finished")
        if not delta:
            return
        self._parts.append(delta)
        if self._clock() - self._written >= self._interval:
            try:
                self._write()
            except StoreError:
                self.failed_writes += 1
                log.warning("reply %s: intermediate write failed; retrying at the next", self.message_id)

    def finish(
        self,
        status: Status = "complete",
        *,
        text: str | None = None,
        sources: Sequence[Mapping[str, Any]] | None = None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Write the final text (``text`` replaces what was appended, e.g. the guarded reply),
        status and, in the same statement, the ``sources`` the answer used (JSON-able dicts,
        ``{"document", "heading", "text", "score", ...}``, best first) and the ``tool_calls``
        the app ran for it (``ToolUse.to_dict``). Raises ``StoreError`` when the database fails."""
        if status not in STATUSES or status == "streaming":
            raise ValueError(f"final status must be complete, stopped or interrupted, got {status!r}")
        if self._status != "streaming":
            return
        if text is not None:
            self._parts = [text]
        if sources:
            self._sources = [dict(source) for source in sources]
        if tool_calls:
            self._tool_calls = [dict(call) for call in tool_calls]
        self._status = status
        self._write()

    def _write(self) -> None:
        if self._gone:
            return
        now = utcnow()
        streaming = self._status == "streaming"  # a write also extends the lease, or ends it
        with self._transaction() as c:
            values = {
                "message_id": self.message_id,
                "text": self.text,
                "status": self._status,
                "now": now,
                "until": self._leases.until(now) if streaming else None,
            }
            if self._sources is None and self._tool_calls is None:
                updated = c.execute(_UPDATE, values).rowcount
            else:
                values.update(sources=self._sources, tool_calls=self._tool_calls)
                updated = c.execute(_FINISH_WITH_EXTRAS, values).rowcount
        self._gone = not updated
        self._written = self._clock()

    def __enter__(self) -> ReplyWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status != "streaming":
            return
        if kind is None:
            self.finish("complete")
        elif issubclass(kind, GeneratorExit | KeyboardInterrupt):
            self.finish("stopped")
        else:
            try:
                self.finish("interrupted")
            except StoreError:
                log.warning("reply %s: could not mark it interrupted", self.message_id)
