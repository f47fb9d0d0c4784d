"""The processes of a scale-out deployment on loopback, for bench_replicas.py and its test:
``python app.py`` replicas on the cloud backend (a scripted OpenAI-compatible server,
tests/fault_server.py), one PostgreSQL, one Redis, and the shipped deploy/nginx.conf in front.

A replica can be killed with SIGKILL (``Kill``): the live replicas mark the replies it left
``streaming`` as interrupted once their leases run out (chat.store.leases), and only then is it
started again on its port, as a container's restart policy with a back-off would: the marking
needs no restart.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pg.py, redis_server.py, fault_server.py, nginx config

from fault_server import FaultServer  # noqa: E402
from redis_server import redis_server  # noqa: E402
from support import free_port  # noqa: E402
from test_service_deploy import running_nginx  # noqa: E402

REPLY_STEP = "ok:24:20"  # each reply: 24 tokens, 20 ms apart (about 0.5 s, like a fast cluster)


@dataclass
class Replica:
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, str(ROOT / "app.py"), "--port", str(self.port)]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"http://{self.address}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.address} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, replies in flight stay ``streaming`` in the database."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# A dead process's replies still streaming: each row names its writer as host:pid:random.
_LEFT_STREAMING = "SELECT count(*) FROM messages WHERE status = 'streaming' AND replica LIKE %s"


class Kill:
    """Kill ``victim`` with SIGKILL (``__call__``, once, from the load's event loop: it returns at
    once, the kill happens in a thread, after ``before`` returns when given); the thread then
    waits until the live replicas have marked every reply it left ``streaming``, timing it, and
    starts it again."""

    def __init__(
        self,
        victim: Replica,
        database_url: str,
        *,
        before: Callable[[], None] | None = None,
        timeout: float = 120,
    ) -> None:
        self.victim, self.before, self.timeout = victim, before, timeout
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://")
        self.pid = 0  # the killed process: its reply rows name it as host:pid:random
        self.in_flight = 0  # its replies streaming just after the kill
        self.marked_after: float | None = None  # seconds from the kill until none was left
        self._thread = threading.Thread(target=self._aftermath, name="kill-aftermath")

    def __call__(self) -> None:
        assert self.victim.process is not None
        self.pid = self.victim.process.pid
        self._thread.start()

    def _aftermath(self) -> None:
        if self.before is not None:
            self.before()
        self.victim.kill()
        self._killed = time.monotonic()
        with psycopg.connect(self.url, autocommit=True) as conn:
            mine = (f"%:{self.pid}:%",)
            self.in_flight = conn.execute(_LEFT_STREAMING, mine).fetchone()[0]
            while time.monotonic() - self._killed < self.timeout:
                if conn.execute(_LEFT_STREAMING, mine).fetchone()[0] == 0:
                    self.marked_after = time.monotonic() - self._killed
                    break
                time.sleep(0.1)
        self.victim.start()
        self.victim.wait_ready()

    def join(self) -> None:
        """Wait for the aftermath, if the kill happened."""
        if self._thread.ident is not None:
            self._thread.join()


@dataclass
class Fleet:
    proxy: str  # http://127.0.0.1:port/
    replicas: list[Replica]
    database_url: str
    redis_url: str
    backend_url: str  # the scripted backend's base URL, as the replicas call it
    rate_limit: int
    workdir: Path
    extra: dict[str, object] = field(default_factory=dict)


def replica_env(
    workdir: Path, database_url: str, redis_url: str, backend_url: str, rate_limit: int, reply_lease: float
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "OPENAI_"))}
    return {
        **env,
        "CHAT_BACKEND": "cloud",
        "OPENAI_BASE_URL": backend_url,
        "OPENAI_MODEL": "scripted",
        "CHAT_DATABASE_URL": database_url,  # no CHAT_COOKIE_SECRET: the key comes from the database
        "CHAT_REDIS_URL": redis_url,
        "CHAT_RATE_LIMIT": str(rate_limit),
        "CHAT_REPLY_LEASE": str(reply_lease),
        "CHAT_TRUSTED_PROXIES": "127.0.0.1",
        "CHAT_FEEDBACK_LOG": str(workdir / "feedback.jsonl"),
        "CHAT_DATA_DIR": str(workdir / "data"),
        "CHAT_LOG_FORMAT": "json",
    }


@contextmanager
def fleet(  # noqa: ANN201 - Iterator[Fleet]
    workdir: Path, *, replicas: int, rate_limit: int, reply_lease: float, database_url: str = ""
):
    """Everything running and ready; ``database_url``: an empty database to use (else a cluster
    of its own, started here); ``reply_lease``: CHAT_REPLY_LEASE, how soon a dead replica's
    replies are marked interrupted."""
    from pg import postgres_server

    with ExitStack() as stack:
        if not database_url:
            server = stack.enter_context(postgres_server(durable=True))
            database_url = server.create_database(f"fleet_{secrets.token_hex(4)}")
        redis = stack.enter_context(redis_server(workdir))
        backend = FaultServer().start()
        stack.callback(backend.stop)
        backend_url = backend.url(REPLY_STEP)
        env = replica_env(workdir, database_url, redis.url, backend_url, rate_limit, reply_lease)
        members = [Replica(free_port(), env, workdir / f"replica-{i}.log") for i in range(replicas)]
        for member in members:  # all at once, on an empty database: they must agree on one key
            member.start()
            stack.callback(member.stop)
        for member in members:
            member.wait_ready()
        proxy = stack.enter_context(running_nginx([m.address for m in members], workdir))
        yield Fleet(
            proxy, members, database_url, redis.url, backend_url, rate_limit, workdir, {"backend": backend}
        )
