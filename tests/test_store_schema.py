"""Where the store lives and how it starts: migrations from empty on SQLite and a real PostgreSQL,
settings, URLs, and passwords and user text kept out of every message."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pg import DATABASES, new_database
from support import free_port

from chat import ConfigError, Settings
from chat.store import Store, StoreError, open_store
from chat.store import database as store_engine
from chat.store.database import MIGRATIONS, data_dir, database_url, parse_url, translate_errors
from chat.store.tables import Base, messages, utcnow


def shown(error: BaseException) -> str:
    """Everything a logged traceback of ``error`` would print."""
    return "".join(traceback.format_exception(error))


TABLES = {"alembic_version", "owners", "conversations", "messages", "feedback", "profiles"}
TABLES |= {"knowledge_documents", "knowledge_chunks", "knowledge_vectors", "server_keys"}
TABLES |= {"reply_facts", "export_log"}  # the operator page (chat.store.operator_tables)
# The knowledge full-text index is dialect-specific DDL in the migration, not in the models: the
# FTS5 table (and its shadow tables) on SQLite, a GIN expression index on PostgreSQL.
FULLTEXT_TABLES = {f"knowledge_fts{part}" for part in ("", "_data", "_idx", "_docsize", "_config")}


def not_fulltext(name: str | None, kind: str, parent: object) -> bool:
    return name not in FULLTEXT_TABLES and name != "ix_knowledge_chunks_terms"


@pytest.fixture(params=DATABASES)
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_database(request, tmp_path)


def test_migrations_run_from_empty_and_match_the_models(new_url: str) -> None:
    engine = sa.create_engine(parse_url(new_url))
    try:
        assert sa.inspect(engine).get_table_names() == []
        store = Store.open(new_url)
        store.close()
        Store.open(new_url).close()  # a second start finds the schema current and changes nothing
        fulltext = FULLTEXT_TABLES if engine.dialect.name == "sqlite" else set()
        assert set(sa.inspect(engine).get_table_names()) == TABLES | fulltext
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
            # The migrations build exactly what the models describe (types, indexes, keys).
            context = MigrationContext.configure(conn, opts={"include_name": not_fulltext})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_settings_for_the_store() -> None:
    s = Settings.from_sources([], env={})
    assert (s.store, s.data_dir, s.database_url, s.retention_days) == (True, "", "", 0)
    s = Settings.from_sources(
        ["--data-dir", "/srv/chat", "--retention-days", "30"],
        env={"CHAT_STORE": "off", "CHAT_DATABASE_URL": "postgresql://chat:pw-canary-77@db/chat"},
    )
    assert (s.store, s.data_dir, s.retention_days) == (False, "/srv/chat", 30)
    assert s.database_url == "postgresql://chat:pw-canary-77@db/chat" and "pw-canary-77" not in repr(s)
    assert Settings.from_sources(["--store", "false"], env={"CHAT_STORE": "on"}).store is False
    with pytest.raises(SystemExit):  # the URL may hold a password: environment only, never a flag
        Settings.from_sources(["--database-url", "sqlite://"], env={})
    with pytest.raises(ConfigError, match="--retention-days must be 0"):
        Settings.from_sources(["--retention-days", "-1"], env={})


def test_data_dir_prefers_a_writable_space_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data_dir("/srv/chat") == Path("/srv/chat")
    monkeypatch.setattr(store_engine, "SPACE_DATA_DIR", tmp_path)
    assert data_dir("") == tmp_path
    monkeypatch.setattr(store_engine, "SPACE_DATA_DIR", tmp_path / "absent")
    assert data_dir("") == Path("data")


def test_open_store_follows_the_settings(tmp_path: Path) -> None:
    assert open_store(Settings(store=False)) is None  # CHAT_STORE=off: nothing kept, no file made
    store = open_store(Settings(data_dir=str(tmp_path / "volume")))
    try:
        conv = store.create_conversation("anon:1")
        assert store.get_conversation("anon:1", conv.id) is not None
        assert (tmp_path / "volume" / "chat.db").is_file()
    finally:
        store.close()
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="cannot create the data directory"):
        open_store(Settings(data_dir=str(blocked / "sub")))


@pytest.mark.parametrize(
    ("text", "driver"),
    [
        ("postgresql://chat:pw@db:5432/chat", "postgresql+psycopg"),
        ("postgres://chat:pw@db/chat", "postgresql+psycopg"),
        ("postgresql+psycopg://chat:pw@db/chat", "postgresql+psycopg"),
        ("sqlite:////srv/chat.db", "sqlite"),
    ],
)
def test_database_urls(text: str, driver: str) -> None:
    assert database_url(text, Path("unused")).drivername == driver


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("mysql://root:pw-canary-77@db/chat", "unsupported database 'mysql'"),
        ("not a url pw-canary-77", "is not a database URL"),
    ],
)
def test_bad_database_url_is_clear_and_hides_the_password(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        database_url(text, Path("unused"))
    assert fragment in str(info.value) and "pw-canary-77" not in str(info.value)


def test_unreachable_or_refused_database_names_the_failure_not_the_password(
    postgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = postgres.url().replace(postgres.password, "pw-canary-77")
    closed = f"postgresql://chat:pw-canary-77@127.0.0.1:{free_port()}/chat"
    for url, fragment in ((wrong, "password authentication failed"), (closed, "connection")):
        with pytest.raises(StoreError) as info:
            Store.open(url)
        assert str(info.value).startswith("OperationalError") and fragment in str(info.value)
        assert "pw-canary-77" not in shown(info.value)
        assert "conversation could not be saved" in info.value.user_message("en")
    assert "pw-canary-77" not in caplog.text
    store = Store.open(postgres.url())
    try:
        assert postgres.password not in repr(store) and "***" in repr(store)
    finally:
        store.close()


def test_database_errors_never_carry_what_users_wrote(new_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = Store.open(new_url)
    try:
        now = utcnow()
        orphan = {"conversation_id": "no-such", "role": "user", "content": "my card is 4111",
                  "status": "complete", "created_at": now, "updated_at": now}  # fmt: skip
        with pytest.raises(StoreError) as info, translate_errors(store.engine.url), store.engine.begin() as c:
            c.execute(sa.insert(messages).values(**orphan))  # violates the foreign key
        assert str(info.value) == "IntegrityError"
        assert "4111" not in caplog.text and "4111" not in shown(info.value)
    finally:
        store.close()


def test_postgres_commits_without_waiting_for_the_disk_unless_the_url_says(postgres) -> None:
    own_options = postgres.url() + "?options=-c%20synchronous_commit%3Don"
    for url, expected in ((postgres.url(), "off"), (own_options, "on")):
        store = Store.open(url)
        try:
            with store._tx() as c:
                assert c.execute(sa.text("SHOW synchronous_commit")).scalar_one() == expected
        finally:
            store.close()
