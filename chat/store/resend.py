"""A user message sent again under the same client key: stored once, its turn continued.

A client that lost its connection before any answer (its replica died, nginx answered 502) sends
the message again, to whichever replica is up; the first may have stored it already. Within a
conversation the key is unique (``uq_messages_client_key``), so a second copy is never written,
even by two replicas at the same moment; the resend continues the stored turn instead:

- its reply, when nobody is writing it (interrupted, stopped, complete but never received), is
  taken over: emptied and streamed again, so the conversation holds what the user now sees;
- when a live replica is still writing it (the same message sent twice at once), the resend
  gets a reply row of its own after it, so neither writer overwrites the other.

A first message opens a conversation whose id the key decides (``conversation_id``), so sending
it again finds that conversation instead of opening a second one.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import sqlalchemy as sa

from chat.errors import InvalidRequest
from chat.store import queries
from chat.store.tables import messages

_STORED = sa.select(messages.c.id, messages.c.content).where(
    messages.c.conversation_id == sa.bindparam("conversation_id"),
    messages.c.client_key == sa.bindparam("key"),
)
_REPLY = sa.select(sa.func.min(messages.c.id)).where(
    messages.c.conversation_id == sa.bindparam("conversation_id"),
    messages.c.role == "assistant",
    messages.c.id > sa.bindparam("question"),
)
# Take the reply over unless a live writer holds it (streaming under a lease not yet run out).
_CLAIM = (
    sa.update(messages)
    .where(messages.c.id == sa.bindparam("reply"))
    .where(
        sa.or_(
            messages.c.status != "streaming",
            messages.c.lease_until.is_(None),
            messages.c.lease_until < sa.bindparam("now"),
        )
    )
    .values(
        content="",
        status="streaming",
        sources=None,
        tool_calls=None,
        replica=sa.bindparam("replica"),
        lease_until=sa.bindparam("until"),
        updated_at=sa.bindparam("now"),
    )
)


def conversation_id(owner: str, key: str) -> str:
    """The id of the conversation a first message sent with ``key`` opens: the same for every
    resend, different for every owner, as long as ``secrets.token_urlsafe(24)``'s ids."""
    digest = hashlib.sha256(f"chat-turn\0{owner}\0{key}".encode()).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode()


def continue_turn(c: sa.Connection, params: dict[str, object], now: datetime) -> int | None:
    """The reply row the resent message's turn streams into, or None when no message of the
    conversation carries the key (the conversation was deleted meanwhile). ``params`` are the
    turn's: conversation, content, key, replica and lease. ``InvalidRequest`` when the key names
    a message of other words: a client's mistake, which storing would hide."""
    stored = c.execute(_STORED, params).first()
    if stored is None:
        return None
    question, content = stored
    if content != params["content"]:
        raise InvalidRequest(reason="invalid.key_reused")
    reply = c.execute(_REPLY, {**params, "question": question}).scalar()
    if reply is not None and c.execute(_CLAIM, {**params, "reply": reply, "now": now}).rowcount:
        return int(reply)
    values = {**params, "role": "assistant", "content": "", "status": "streaming"}
    return c.execute(queries.INSERT_OWNED, values).scalar()
