"""A real PostgreSQL server for tests and benchmarks: Debian's binaries, a throw-away cluster in a
temporary folder, listening on a free loopback port with password authentication.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` user and
the binaries run through ``runuser``. ``pg_ctl start`` always gets ``-l <logfile>``: without it
the server keeps pg_ctl's output pipe open and a captured pg_ctl never returns.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from support import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
USER = "chat"


def binaries() -> Path | None:
    """The newest installed PostgreSQL bin directory with initdb and pg_ctl, or None."""
    for bin_dir in BIN_DIRS:
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


class PostgresServer:
    """A running cluster. ``url(db)`` is a ``postgresql://`` URL with the password in it."""

    def __init__(self, bin_dir: Path, root: Path, port: int, password: str) -> None:
        self.bin_dir, self.root, self.port, self.password = bin_dir, root, port, password
        self._scratch = False
        self._pg_ctl: list[str] = []
        self._start: list[str] = []

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def clean_database(self) -> str:
        """The session's shared test database, emptied of rows (faster than a new database per
        test); the schema stays, as the store migrates it on first open."""
        if not self._scratch:
            self.create_database("scratch")
            self._scratch = True
        with psycopg.connect(self.url("scratch"), autocommit=True) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            ]
            if tables:
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        return self.url("scratch")

    def restart(self) -> None:
        """Stop the server (fast: open connections are cut) and start it again."""
        _run([*self._pg_ctl, "-m", "fast", "-w", "stop"], self)
        _run(self._start, self)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _runner() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def postgres_server(*, durable: bool = False, bin_dir: Path | None = None) -> Iterator[PostgresServer]:
    """Start a cluster, yield it, stop it and delete its files. ``durable=False`` turns fsync off
    (tests: faster, and nothing here must survive a power cut); benchmarks pass True. ``bin_dir``:
    another build's binaries (pgserver's, which has pgvector) instead of Debian's."""
    bin_dir = bin_dir or binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="chat-pg-"))
    password = secrets.token_urlsafe(12)
    server = PostgresServer(bin_dir, root, free_port(), password)
    (root / "pw").write_text(password)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (root, root / "pw"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    run = _runner()
    options = f"-p {server.port} -c listen_addresses=127.0.0.1 -k {root}"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    server._pg_ctl = [*run, str(bin_dir / "pg_ctl"), "-D", str(root / "data")]
    server._start = [
        *server._pg_ctl,
        "-l",
        str(root / "server.log"),
        "-o",
        options,
        "-w",
        "-t",
        "60",
        "start",
    ]
    try:
        _run(
            [*run, str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", USER, f"--pwfile={root / 'pw'}",
             "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"],
            server,
        )  # fmt: skip
        _run(server._start, server)
        yield server
    finally:
        subprocess.run([*server._pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str], server: PostgresServer) -> None:
    """Run an initdb/pg_ctl step; a failure says what the tool and the server said."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        tool = Path(command[len(_runner())]).name
        raise RuntimeError(
            f"{tool} failed ({done.returncode}): {done.stderr.strip()}\n{server.log()[-2000:]}"
        )


DATABASES = ["sqlite", "postgresql"]


def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """For tests parametrised over ``DATABASES``: the URL of a database with no rows, of the kind
    ``request.param`` names (a new SQLite file, or the session PostgreSQL's test database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    return request.getfixturevalue("postgres").clean_database()


def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Like ``empty_database``, but truly empty: no tables at all."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'new.db'}"
    return request.getfixturevalue("postgres").create_database(f"t_{secrets.token_hex(6)}")
