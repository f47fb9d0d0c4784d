"""The one read a stored turn makes for its system notes: the conversation's summary and its
owner's profile, in a single query (a turn's store time stays within its budget)."""

from __future__ import annotations

import sqlalchemy as sa

from chat.store.engine import translate_errors
from chat.store.models import conversations, profiles
from chat.store.records import Profile
from chat.store.store import Store

_NOTES = (
    sa.select(
        conversations.c.summary,
        profiles.c.display_name,
        profiles.c.language,
        profiles.c.persona,
        profiles.c.notes,
        profiles.c.opt_in,
    )
    .select_from(conversations.outerjoin(profiles, profiles.c.owner_id == conversations.c.owner_id))
    .where(conversations.c.id == sa.bindparam("conversation_id"))
    .where(conversations.c.owner_id == sa.bindparam("owner"))
)


def turn_notes(store: Store, owner: str, conversation_id: str) -> tuple[str, Profile | None]:
    """The raw stored summary ("" when none, or the conversation is not the owner's) and the
    owner's profile (None when they have none). ``StoreError`` when the database fails."""
    with translate_errors(store.engine.url), store.engine.begin() as c:
        row = c.execute(_NOTES, {"conversation_id": conversation_id, "owner": owner}).first()
    if row is None:
        return "", None
    summary, *fields = row
    if fields[-1] is None:  # no profile row
        return summary or "", None
    names = ("display_name", "language", "persona", "notes", "opt_in")
    return summary or "", Profile(**dict(zip(names, fields, strict=True)))
