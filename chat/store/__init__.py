"""The conversation store: conversations, messages, ratings and profiles kept on the server.

SQLite in the data directory by default, PostgreSQL when ``CHAT_DATABASE_URL`` is set (several
replicas share it), nothing at all with ``CHAT_STORE=off``. The app calls ``open_store(settings)``
once at start-up; it migrates the schema and, from then on, marks replies a dead process left
half-written as interrupted (``chat.store.leases``)::

    store = open_store(settings)          # None when the store is off
    conv = store.create_conversation(owner)
    turn = store.start_turn(owner, conv.id, text)            # before generation starts
    with turn.writer as writer:                              # the reply, as it streams
        ...
"""

from __future__ import annotations

import logging

from chat.settings import Settings
from chat.store import operator_tables  # noqa: F401 - its tables join the schema (migration 0006)
from chat.store.database import data_dir, database_url, safe_url
from chat.store.errors import ConversationNotFound, StoreError
from chat.store.records import STATUSES, Conversation, ConversationInfo, Profile, Status, StoredMessage
from chat.store.store import Store
from chat.store.writer import ReplyWriter

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store | None:
    """The store the settings ask for, migrated and ready (with a retention period, expired
    conversations are purged now and every hour); None with ``CHAT_STORE=off``.
    Raises ``ConfigError`` for a bad URL or data directory, ``StoreError`` when the database
    cannot be reached."""
    if not settings.store:
        log.info("conversation store: off (nothing is kept on the server)")
        return None
    url = database_url(settings.database_url, data_dir(settings.data_dir))
    store = Store.open(url, retention_days=settings.retention_days, lease_seconds=settings.reply_lease)
    purged = store.purge_expired()
    if settings.retention_days:
        store.purge_every(3600.0)
    log.info("conversation store: %s (%d expired conversations purged)", safe_url(url), purged)
    return store


__all__ = [
    "STATUSES",
    "Conversation",
    "ConversationInfo",
    "ConversationNotFound",
    "Profile",
    "ReplyWriter",
    "Status",
    "Store",
    "StoreError",
    "StoredMessage",
    "open_store",
]
