"""Keys the server makes for itself and every replica must share, kept in the database: the one
that signs anonymous visitors' ``chat_visitor`` cookies.

The first process to ask creates the key (``INSERT ... ON CONFLICT DO NOTHING``), and every
process reads back the one row that won, so replicas starting together on an empty SQLite file
or PostgreSQL database, and every later restart, agree without configuration. Whoever can read
the database can read this key, as they can read the conversations it guards.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chat.settings import Settings
from chat.store.database import data_dir, translate_errors
from chat.store.store import Store
from chat.store.tables import server_keys, utcnow

KEY_BYTES = 32
VISITOR_KEY_FILE = "visitor.key"  # where an older install kept the visitor key: the data directory


def shared_key(store: Store, name: str, *, initial: bytes | None = None) -> bytes:
    """The key called ``name``, created now (``initial``, else random bytes) if no process has."""
    engine = store.engine
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(server_keys)
    row = {"name": name, "value": initial or secrets.token_bytes(KEY_BYTES), "created_at": utcnow()}
    with translate_errors(engine.url), engine.begin() as connection:
        connection.execute(insert.values(row).on_conflict_do_nothing(index_elements=["name"]))
        query = sa.select(server_keys.c.value).where(server_keys.c.name == name)
        return bytes(connection.execute(query).scalar_one())


def legacy_key(path: Path) -> bytes | None:
    """A key an older install kept in a file, so the cookies it signed stay valid (None: none)."""
    try:
        key = path.read_bytes()
    except OSError:
        return None
    return key if len(key) >= KEY_BYTES else None


def visitor_key(settings: Settings, store: Store | None) -> bytes | None:
    """The key that signs anonymous owners' ``chat_visitor`` cookies, the same on every replica
    and after every restart: ``CHAT_COOKIE_SECRET``; else the one kept in the database, made by
    the first process that starts (an older install's key file becomes that key); else, with the
    store off, None (a new key per process: nothing is kept to come back to)."""
    if settings.cookie_secret:
        return hashlib.sha256(settings.cookie_secret.encode()).digest()
    if store is None:
        return None
    older = None if settings.database_url else legacy_key(data_dir(settings.data_dir) / VISITOR_KEY_FILE)
    return shared_key(store, "visitor", initial=older)
