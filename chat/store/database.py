"""Which database, how to connect to it, and how its schema is brought up to date.

One code path for SQLite (a file in the data directory) and PostgreSQL (``CHAT_DATABASE_URL``,
through psycopg 3). The URL may hold a password: it is only ever shown masked
(``safe_url``), and database errors are translated here into ``StoreError`` without SQL
parameters, which would carry what users wrote.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from chat.errors import ConfigError
from chat.store.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
SPACE_DATA_DIR = Path("/data")  # a Hugging Face Space's persistent storage, when attached
_PG_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
PING_AFTER = 10.0  # seconds a pooled PostgreSQL connection may idle before it is checked
_MIGRATION_LOCK = 7_412_001  # PostgreSQL advisory lock id: replicas starting together migrate in turn


def data_dir(configured: str) -> Path:
    """``--data-dir`` when given; else ``/data`` when it exists and is writable (a Space with
    persistent storage); else ``./data``."""
    if configured:
        return Path(configured)
    if SPACE_DATA_DIR.is_dir() and os.access(SPACE_DATA_DIR, os.W_OK | os.X_OK):
        return SPACE_DATA_DIR
    return Path("data")


def database_url(configured: str, data_directory: Path) -> URL:
    """The SQLAlchemy URL: ``CHAT_DATABASE_URL`` (``postgresql://`` mapped to psycopg 3), or the
    SQLite file ``chat.db`` in the data directory (created if missing)."""
    if not configured:
        try:
            data_directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {data_directory}: {exc.strerror}") from None
        return URL.create("sqlite", database=str(data_directory / "chat.db"))
    return parse_url(configured)


def parse_url(text: str) -> URL:
    """``postgresql://`` (or ``postgres://``) as psycopg 3's URL; ``sqlite:///path`` as is."""
    try:
        url = sa.make_url(text)
    except ArgumentError:
        url = None
    if url is None:  # the text may hold a password: never echo it
        raise ConfigError("CHAT_DATABASE_URL is not a database URL (expected postgresql://user:pass@host/db)")
    if url.drivername in _PG_SCHEMES:
        return url.set(drivername="postgresql+psycopg")
    if url.drivername == "sqlite":
        return url
    raise ConfigError(
        f"CHAT_DATABASE_URL: unsupported database {url.drivername!r}; use postgresql:// or sqlite://"
    )


def safe_url(url: URL) -> str:
    """The URL with its password masked, for logs and messages."""
    return url.render_as_string(hide_password=True)


def create_engine(url: URL) -> Engine:
    """A thread-safe engine with connection pooling; statement parameters are never logged."""
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # Commit without waiting for the WAL flush, unless the URL sets its own options: a killed app
    # loses nothing (the server has every commit), and the server's crash loses at most its
    # last ~0.6 s, never consistency: the same guarantee as SQLite's WAL with synchronous=NORMAL.
    # Waiting for the disk costs ~4 ms per write here, more than a whole turn's budget.
    connect_args = {} if "options" in url.query else {"options": "-c synchronous_commit=off"}
    engine = sa.create_engine(
        url, hide_parameters=True, pool_size=5, max_overflow=10, connect_args=connect_args
    )
    event.listen(engine, "checkin", _idle_since)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


def _idle_since(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    # Like pool_pre_ping, but only for a connection idle longer than PING_AFTER: a database
    # restart or a proxy's idle timeout is caught before use, and a streaming reply's writes,
    # a round trip each, are not doubled by pings.
    if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER:
        return
    try:
        dbapi_connection.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception:  # any failure means a dead connection: the pool replaces it and retries
        raise sa.exc.DisconnectionError() from None


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Manage transactions ourselves (see _sqlite_begin); WAL lets readers run beside a writer;
    # NORMAL sync in WAL survives a killed process; foreign keys make ON DELETE CASCADE work.
    dbapi_connection.isolation_level = None
    _enable_wal(dbapi_connection)
    for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _enable_wal(dbapi_connection: Any, attempts: int = 250) -> None:
    # Switching a new file to WAL needs it alone for a moment, and SQLite answers "locked" at
    # once instead of waiting on the busy timeout: two replicas starting together must retry.
    for attempt in range(attempts):
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or attempt == attempts - 1:
                raise
            time.sleep(0.02)


def _sqlite_begin(connection: sa.Connection) -> None:
    # Take the write lock when the transaction starts, so two writers queue on the busy timeout
    # instead of one failing with "database is locked" when it upgrades a read lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration, from empty if need be."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with translate_errors(engine.url), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def translate_errors(url: URL) -> Iterator[None]:
    """Turn a database failure (driver errors, an exhausted pool) into a ``StoreError`` with a clean
    message. Programming errors (a bad statement) are bugs and stay as they are."""
    failure: str | None = None
    try:
        yield
    except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
        failure = _describe(exc, url)
    if failure is not None:  # ``from None``: a logged traceback never shows the original's SQL
        log.error("database error on %s: %s", safe_url(url), failure)
        raise StoreError(failure) from None


def _describe(exc: SQLAlchemyError, url: URL) -> str:
    name = type(exc).__name__
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and exc.orig is not None:
        # Connection-level driver messages (refused, timeout, locked) help operators and carry no
        # SQL parameters; the password is masked in case a driver ever repeats it.
        detail = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        if url.password:
            detail = detail.replace(str(url.password), "***")
        return f"{name}: {detail}" if detail else name
    return name
