"""One visitor key without configuration (issue 32): with no CHAT_COOKIE_SECRET the key that signs
anonymous visitors' cookies lives in the database, so every replica and every restart agree.
Two processes starting at the same moment on an empty SQLite file, then on an empty PostgreSQL
database, make one key between them, not two; CHAT_COOKIE_SECRET still wins; the key file an
older install kept in the data directory is adopted, so its visitors keep their conversations."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from chat.settings import Settings
from chat.store import open_store
from chat.store.keys import VISITOR_KEY_FILE, visitor_key

ROOT = Path(__file__).resolve().parent.parent

# One replica's start, as far as the key goes: open (and migrate) the store, then read or make the
# key. Each process says when it is ready and waits for "go", so both race for each database.
STARTUP = """
import hashlib, sys
from chat.settings import Settings
from chat.store.keys import visitor_key
from chat.store import open_store
for url in sys.argv[2:]:
    settings = Settings(database_url=url, data_dir=sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    store = open_store(settings)
    print(hashlib.sha256(visitor_key(settings, store)).hexdigest(), flush=True)
    store.close()
"""


def keys_in(url: str) -> int:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM server_keys")).scalar_one()
    finally:
        engine.dispose()


def test_two_replicas_starting_together_make_one_key(postgres, tmp_path: Path) -> None:  # noqa: ANN001
    sqlite_url = f"sqlite:///{tmp_path / 'chat.db'}"
    pg_url = postgres.create_database(f"key_{secrets.token_hex(4)}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", STARTUP, str(tmp_path / "data"), sqlite_url, pg_url]
    replicas = [
        subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs: list[list[str]] = [[], []]
    for _database in (sqlite_url, pg_url):
        for replica in replicas:
            assert replica.stdout is not None and replica.stdout.readline() == "ready\n"
        for replica in replicas:  # both go at once
            assert replica.stdin is not None
            replica.stdin.write("go\n")
            replica.stdin.flush()
        for n, replica in enumerate(replicas):
            assert replica.stdout is not None
            outputs[n].append(replica.stdout.readline().strip())
    for replica in replicas:
        assert replica.wait(30) == 0
    (sqlite_one, pg_one), (sqlite_two, pg_two) = outputs
    assert sqlite_one == sqlite_two and pg_one == pg_two and sqlite_one != pg_one
    assert keys_in(sqlite_url) == 1 and keys_in(pg_url) == 1

    settings = Settings(database_url=pg_url)  # a restart reads the same key back
    store = open_store(settings)
    try:
        assert hashlib.sha256(visitor_key(settings, store)).hexdigest() == pg_one
        # An explicit secret wins over the stored key, on every replica alike.
        explicit = Settings(database_url=pg_url, cookie_secret="rotated")
        assert visitor_key(explicit, store) == hashlib.sha256(b"rotated").digest()
    finally:
        store.close()


def test_an_older_installs_key_file_is_adopted(tmp_path: Path) -> None:
    old = secrets.token_bytes(32)
    (tmp_path / VISITOR_KEY_FILE).write_bytes(old)
    settings = Settings(data_dir=str(tmp_path))
    store = open_store(settings)
    try:
        assert visitor_key(settings, store) == old
        (tmp_path / VISITOR_KEY_FILE).unlink()  # from now on the database holds it
        assert visitor_key(settings, store) == old
    finally:
        store.close()
    assert visitor_key(Settings(store=False), None) is None  # nothing kept: a key per process
