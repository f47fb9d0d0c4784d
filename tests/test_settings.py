"""Settings: every flag has an environment variable, flags win, bad values are clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from support import free_port

from chat import ConfigError, Settings
from chat.settings import settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    s = Settings.from_sources([], env={})
    assert (s.host, s.port, s.share, s.model, s.backend, s.n_ctx) == (
        "127.0.0.1",
        7860,
        False,
        "",
        "local",
        4096,
    )
    assert s.n_gpu_layers is None and s.auth_pair is None


def test_environment_then_flags() -> None:
    env = {"CHAT_N_CTX": "1024", "CHAT_THREADS": "2", "CHAT_SHARE": "yes", "GRADIO_SERVER_PORT": "9000"}
    s = Settings.from_sources([], env=env)
    assert (s.n_ctx, s.threads, s.share, s.port) == (1024, 2, True, 9000)
    s = Settings.from_sources(["--n-ctx", "2048", "--port", "9100", "--share", "false"], env=env)
    assert (s.n_ctx, s.port, s.share) == (2048, 9100, False)


def test_chat_port_wins_over_gradio_port() -> None:
    assert Settings.from_sources([], env={"CHAT_PORT": "8001", "GRADIO_SERVER_PORT": "9000"}).port == 8001


def test_api_key_comes_only_from_the_environment() -> None:
    s = Settings.from_sources([], env={"OPENAI_API_KEY": "sk-canary-123"})
    assert s.api_key == "sk-canary-123"
    assert "sk-canary-123" not in repr(s)
    with pytest.raises(SystemExit):
        Settings.from_sources(["--api-key", "sk-x"], env={})


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--port", "0"], {}, "--port must be 1-65535"),
        ([], {"CHAT_SHARE": "maybe"}, "CHAT_SHARE: cannot read 'maybe'"),
        (["--backend", "gpu"], {}, "unknown backend 'gpu'"),
        (["--backend", "cloud"], {}, "needs --api-base-url"),
        ([], {"CHAT_FALLBACK": "local,cloud"}, "needs --api-base-url"),
    ],
)
def test_bad_settings(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_sources(argv, env=env)
    assert fragment in str(info.value)


def test_the_configuration_page_settings_table_is_current() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = page.split("<!-- settings-table:start -->\n")[1].split("\n<!-- settings-table:end -->")[0]
    assert documented == settings_table(), (
        "run: python -m chat.settings, and paste into docs/configuration.md"
    )


def start_app(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), *args],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "Chat running at" in line:
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("app did not start:\n" + "".join(lines))


@pytest.fixture(scope="module")
def shared_app() -> Iterator[tuple[str, str]]:
    """One ``python app.py --share --auth ada:lovelace`` on GRADIO_SERVER_PORT for the tests that
    only look at it (an app start costs seconds): its URL, and what it said after it started."""
    port = free_port()
    env = {"GRADIO_SERVER_PORT": str(port), "CHAT_N_CTX": "512"}
    proc, _ = start_app("--share", "--auth", "ada:lovelace", env=env)
    try:
        rest = ""
        deadline = time.monotonic() + 60
        while "could not create the public share link" not in rest and time.monotonic() < deadline:
            rest += proc.stderr.readline()
        yield f"http://127.0.0.1:{port}", rest
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def logged_in(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/login", data={"username": "ada", "password": "lovelace"}).status_code == 200
        yield client


def test_app_honours_gradio_server_port_and_serves(shared_app: tuple[str, str]) -> None:
    base, _ = shared_app
    with logged_in(base) as c:
        config = c.get("/config").json()
    assert any(d.get("api_name") == "chat" for d in config["dependencies"])


def test_share_without_internet_says_so_and_keeps_serving(shared_app: tuple[str, str]) -> None:
    """The share tunnel needs the internet (not available here): the failure path is real."""
    base, rest = shared_app
    assert "could not create the public share link" in rest
    assert "still serving locally" in rest
    with logged_in(base) as c:
        assert c.get("/config").status_code == 200


def test_auth_protects_the_app(shared_app: tuple[str, str]) -> None:
    base, _ = shared_app
    assert httpx.get(base + "/config", timeout=10).status_code == 401
    with httpx.Client(base_url=base, timeout=10) as c:
        assert c.post("/login", data={"username": "ada", "password": "wrong"}).status_code == 400
        assert c.post("/login", data={"username": "ada", "password": "lovelace"}).status_code == 200
        assert c.get("/config").status_code == 200
