"""Two replicas of the app (``python app.py`` subprocesses, the real embedded model) sharing one real
PostgreSQL, behind the shipped deploy/nginx.conf on loopback (issue 12's scale-out test): a
conversation started through one replica continues through the other, from the stored history,
and both list it. No CHAT_COOKIE_SECRET: the replicas, started together on an empty database,
sign visitors' cookies with the one key they keep there (issue 32).

nginx keeps a visitor on one replica by its ``chat_sticky`` cookie; the test picks the replica by
choosing that cookie, as two devices (or a failover) of the same visitor would land on two.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from support import free_port
from test_service_deploy import nginx_config, tool

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {"temperature": 0, "max_new_tokens": 12}


@contextmanager
def replica(port: int, env: dict[str, str], logs: Path) -> Iterator[str]:
    """``python app.py`` on ``port`` until it is ready; yields host:port."""
    command = [sys.executable, str(ROOT / "app.py"), "--n-ctx", "1024", "--port", str(port)]
    log = (logs / f"replica-{port}.log").open("w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def wait_ready(url: str, logs: Path) -> None:
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("not ready: " + url + "\n" + "\n".join(p.read_text() for p in logs.glob("*.log")))
        time.sleep(0.3)


@pytest.fixture(scope="module")
def proxy(postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    nginx = tool("nginx")
    prefix = tmp_path_factory.mktemp("replicas")
    env = {
        **os.environ,
        "CHAT_DATABASE_URL": postgres.create_database(f"replicas_{secrets.token_hex(4)}"),
        "CHAT_TRUSTED_PROXIES": "127.0.0.1",
        "CHAT_STORE": "on",
        "CHAT_RATE_LIMIT": "0",
        "CHAT_API_TOKEN": "",
        "CHAT_AUTH": "",
        "CHAT_MODEL": "",
        "CHAT_FEEDBACK_LOG": str(prefix / "feedback.jsonl"),
        "CHAT_DATA_DIR": str(prefix / "data"),
    }
    with ExitStack() as stack:
        replicas = [stack.enter_context(replica(free_port(), env, prefix)) for _ in range(2)]
        for address in replicas:
            wait_ready(f"http://{address}/readyz", prefix)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(replicas, port, prefix), encoding="utf-8")
        check = subprocess.run(
            [nginx, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"])
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", prefix)
            yield f"http://127.0.0.1:{port}/"
        finally:
            process.terminate()
            process.wait(10)


def sticky_values(proxy: str) -> dict[str, str]:
    """A ``chat_sticky`` cookie value that lands on each replica: {upstream address: value}."""
    found: dict[str, str] = {}
    for i in range(64):
        value = f"visitor-{i}"
        served = httpx.get(proxy + "healthz", cookies={"chat_sticky": value}).headers["x-served-by"]
        found.setdefault(served, value)
        if len(found) == 2:
            return found
    pytest.fail(f"nginx sent every visitor to {set(found)}")


def chat(http: httpx.Client, text: str, **body: object) -> tuple[dict, str]:
    response = http.post("/api/chat", json={"user_input": text, "context": PARAMS, **body})
    assert response.status_code == 200, response.text
    return response.json(), response.headers["x-served-by"]


@pytest.mark.slow
def test_a_conversation_continues_on_the_other_replica(proxy: str) -> None:
    (a, sticky_a), (b, sticky_b) = sorted(sticky_values(proxy).items())
    with httpx.Client(base_url=proxy, timeout=120, cookies={"chat_sticky": sticky_a}) as on_a:
        first, served = chat(on_a, "My name is Ana and my order number is 4417.")
        assert served == a
        cid = first["conversation_id"]
        visitor = on_a.cookies["chat_visitor"]  # the anonymous owner, signed with the stored key

        with httpx.Client(
            base_url=proxy, timeout=120, cookies={"chat_sticky": sticky_b, "chat_visitor": visitor}
        ) as on_b:
            second, served = chat(on_b, "What is my order number?", conversation_id=cid)
            assert served == b and second["conversation_id"] == cid
            fresh, served = chat(on_b, "What is my order number?")  # the same words, no history
            assert served == b and fresh["conversation_id"] != cid
            # Replica B answered from the history replica A stored: the prompt held the first turn.
            assert second["prompt_tokens"] > fresh["prompt_tokens"] + 10

            views = [client.get(f"/api/conversations/{cid}") for client in (on_a, on_b)]
            assert [v.headers["x-served-by"] for v in views] == [a, b]
            messages = [[(m["role"], m["content"], m["status"]) for m in v.json()["messages"]] for v in views]
            assert messages[0] == messages[1]
            assert [m[:1] + m[2:] for m in messages[0]] == [
                ("user", "complete"),
                ("assistant", "complete"),
                ("user", "complete"),
                ("assistant", "complete"),
            ]
            assert messages[0][0][1] == "My name is Ana and my order number is 4417."
            assert messages[0][1][1] == first["reply"] and messages[0][3][1] == second["reply"]

            for client in (on_a, on_b):
                listed = client.get("/api/conversations").json()["conversations"]
                assert [c["id"] for c in listed] == [fresh["conversation_id"], cid]  # newest first
