"""The Dockerfile (hadolint, its HEALTHCHECK command) and deploy/nginx.conf in front of replicas.

No Docker engine runs here, so the image is linted, not built. nginx runs for real, with the
shipped configuration and only its upstream addresses and listen port rewritten, in front of two
app replicas on loopback ports.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from service_support import serve, service_engine, sse_events
from support import free_port
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
# Asked greedy (temperature 0) where a test holds the model: sampled, it may stop at once.
LONG_TASK = "Count from 1 to 600, separated by commas."


def tool(name: str) -> str:
    """The path of a tool CI installs; skipped on a developer machine without it, failed in CI."""
    path = shutil.which(name) or (shutil.which(name, path="/usr/sbin") if name == "nginx" else None)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# --- Dockerfile ------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_like_ci_and_runs_as_non_root() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "RUN pip install -r requirements.txt" in text
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert "pip install -q -r requirements-dev.txt" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:\S*slim|^ARG PYTHON_IMAGE=python:\S*slim", text, re.M)
    assert re.search(r"^FROM .* AS builder$", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    for copied in re.findall(r"^COPY --chown=\S+ (\S+) ", text, re.M):
        assert (ROOT / copied).exists(), copied


def test_dockerfile_healthcheck_command_probes_healthz(local_backend) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    command = json.loads(re.search(r"HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])", text).group(1))
    assert command[0] == "python"
    with serve(service_engine(local_backend), full=False) as url:
        port = url.rstrip("/").rsplit(":", 1)[1]
        ok = subprocess.run([sys.executable, *command[1:]], env={**os.environ, "CHAT_PORT": port}, timeout=30)
    assert ok.returncode == 0
    down = subprocess.run(
        [sys.executable, *command[1:]],
        env={**os.environ, "CHAT_PORT": str(free_port())},
        capture_output=True,
        timeout=30,
    )
    assert down.returncode != 0


# --- nginx in front of two replicas ------------------------------------------------------------------


def nginx_config(replicas: list[str], port: int, prefix: Path) -> str:
    """The shipped config with this test's upstreams, port and writable paths."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    options = re.search(r"server app\d+:7860( [^;]*);", text)
    assert options is not None
    servers = "\n".join(f"        server {r}{options[1]};" for r in replicas)
    text, count = re.subn(r"(?:^ *server app\d+:7860[^;]*;\n)+", servers + "\n", text, flags=re.M)
    assert count == 1
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    text = text.replace("/tmp/", f"{prefix}/")
    text = text.replace("access_log /dev/stdout;", f"access_log {prefix}/access.log;")
    text = text.replace("error_log /dev/stderr warn;", f"error_log {prefix}/error.log warn;")
    return text


@pytest.fixture(scope="module")
def proxy(local_backend, tmp_path_factory) -> Iterator[str]:
    prefix = tmp_path_factory.mktemp("nginx")
    trusted = {"trusted_proxies": ("127.0.0.1",)}  # nginx, as CHAT_TRUSTED_PROXIES in the compose file
    with (
        serve(service_engine(local_backend), **trusted) as one,
        serve(service_engine(local_backend), **trusted) as two,
    ):
        replicas = [u.removeprefix("http://").rstrip("/") for u in (one, two)]
        with running_nginx(replicas, prefix) as url:
            yield url


@contextmanager
def running_nginx(replicas: list[str], prefix: Path) -> Iterator[str]:
    """deploy/nginx.conf in front of ``replicas`` (host:port), checked, started and answering
    /healthz; yields its URL."""
    nginx = tool("nginx")
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(replicas, port, prefix), encoding="utf-8")
    check = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (prefix / "error.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_a_visitor_stays_on_one_replica(proxy: str) -> None:
    """Affinity rides on the visitor cookie the app hands out with its first answer."""
    first = httpx.get(proxy + "api/conversations")
    visitor = first.cookies.get("chat_visitor")
    assert visitor and "chat_sticky" not in first.cookies  # nginx sets no cookie of its own
    served = {
        httpx.get(proxy + "healthz", cookies={"chat_visitor": visitor}).headers["x-served-by"]
        for _ in range(8)
    }
    assert len(served) == 1
    spread = {
        httpx.get(proxy + "healthz", cookies={"chat_visitor": f"visitor-{i}"}).headers["x-served-by"]
        for i in range(16)
    }
    assert len(spread) == 2  # different visitors use both replicas
    pinned = {
        httpx.get(proxy + "healthz", cookies={"chat_visitor": f"visitor-{i}", "chat_sticky": "pin"}).headers[
            "x-served-by"
        ]
        for i in range(8)
    }
    assert len(pinned) == 1  # an explicit chat_sticky pin wins over the visitor
    # A client without cookies that names its conversation stays with it too.
    by_conversation = [
        httpx.get(proxy + "healthz", headers={"X-Conversation-Id": f"c{i % 8}"}).headers["x-served-by"]
        for i in range(16)
    ]
    assert by_conversation[:8] == by_conversation[8:] and len(set(by_conversation)) == 2


def test_gradio_queue_works_through_the_proxy(proxy: str) -> None:
    from gradio_client import Client

    c = Client(proxy, verbose=False)
    try:
        assert c.predict(message="Say ok.", max_new_tokens=4, api_name="/chat")
    finally:
        c.close()


def test_events_stream_unbuffered_and_a_closed_stream_frees_the_model(proxy: str, local_backend) -> None:
    request = {"user_input": LONG_TASK, "stream": True, "context": {"max_new_tokens": 1500, "temperature": 0}}
    with httpx.stream("POST", proxy + "api/chat", json=request, timeout=60) as response:
        assert response.status_code == 200
        deltas = 0
        for name, _ in sse_events(response.iter_lines()):
            deltas += name == "delta"
            if deltas == 3:
                break
        # The first deltas arrived while the model is still generating: nothing held them back.
        assert local_backend.queue_depth == 1
    deadline = time.monotonic() + 20
    while local_backend.queue_depth and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local_backend.queue_depth == 0


def test_websocket_upgrades_through_the_proxy(proxy: str) -> None:
    with connect(proxy.replace("http://", "ws://") + "ws") as ws:
        for question in ("My name is Ada.", "What is my name?"):
            ws.send(json.dumps({"user_input": question, "context": {"max_new_tokens": 8}}))
            while (event := json.loads(ws.recv(timeout=60)))["type"] != "done":
                pass
        assert event["prompt_tokens"] > 20  # the second turn carried the first


def test_metrics_are_not_public_through_the_proxy(proxy: str) -> None:
    assert httpx.get(proxy + "metrics").status_code == 404


def test_a_client_cannot_pick_its_address_through_the_proxy(proxy: str) -> None:
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Capture()
    logging.getLogger("chat.access").addHandler(handler)
    try:  # text/plain: the door refuses it at once (no model time) and logs who asked
        refused = httpx.post(
            proxy + "api/chat", content=b"hi", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.7"}
        )
    finally:
        logging.getLogger("chat.access").removeHandler(handler)
    assert refused.status_code == 415
    line = next(x for x in lines if refused.headers["x-request-id"] in x)
    assert "client=127.0.0.1" in line and "6.6.6." not in line


def test_websocket_origin_is_checked_through_the_proxy(proxy: str) -> None:
    own = proxy.rstrip("/")
    with connect(proxy.replace("http://", "ws://") + "ws", additional_headers={"Origin": own}):
        pass  # nginx passes Host with its port, so the app's own page is same-origin
    with (
        pytest.raises(InvalidStatus) as info,
        connect(
            proxy.replace("http://", "ws://") + "ws", additional_headers={"Origin": "https://evil.example"}
        ),
    ):
        pass
    assert info.value.response.status_code == 403
