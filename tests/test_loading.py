"""Background model download: the server answers at once and shows progress; requests wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fake_hub import serve
from gradio_client import Client
from support import frames, free_port

from chat import Done, GenerationParams, Waiting
from chat.backends.base import Backend
from chat.backends.local.loading import PendingBackend
from chat.backends.local.model_files import embedded_model_path
from chat.engine import ChatEngine
from chat.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_requests_wait_for_a_loading_model_and_see_its_progress(local_backend) -> None:
    release = []

    def slow_load(report) -> Backend:  # noqa: ANN001
        for step in range(3):
            report(f"Downloading: {step * 40}%")
            time.sleep(0.4)
        release.append(True)
        return local_backend

    pending = PendingBackend("local", "org/repo:model.gguf", slow_load, n_ctx=2048)
    engine = ChatEngine({"local": pending})
    assert not pending.ready and pending.context_window() == 2048
    events = list(engine.stream([{"role": "user", "content": "Hi"}], GenerationParams(max_new_tokens=8)))
    statuses = [e.status for e in events if isinstance(e, Waiting)]
    assert statuses and all(s.startswith("Downloading") or s == "Ready" for s in statuses)
    assert isinstance(events[-1], Done) and events[-1].text
    assert pending.ready and pending.model == local_backend.model


def test_a_failed_load_is_reported_to_every_request() -> None:
    def broken(report) -> Backend:  # noqa: ANN001
        raise ConfigError("no file in org/repo matches '*.gguf'")

    engine = ChatEngine({"local": PendingBackend("local", "org/repo:*.gguf", broken, n_ctx=512)})
    for _ in range(2):
        try:
            engine.reply([{"role": "user", "content": "Hi"}])
        except ConfigError as exc:
            assert "no file in org/repo" in str(exc)
        else:
            raise AssertionError("expected the load error")


def test_app_starts_before_a_hub_download_finishes(tmp_path: Path) -> None:
    """The Hub is a loopback stand-in (the real one needs the internet); it holds the second
    half of the file until the test has seen the app serving."""
    hub_port, app_port = free_port(), free_port()
    hub = serve(hub_port, embedded_model_path(), bytes_per_second=200e6)
    hub.gate.clear()
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{hub_port}",
        "HF_HOME": str(tmp_path),
        "CHAT_N_CTX": "512",
    }
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "--model",
            "testorg/tiny-GGUF:*Q4_1.gguf",
            "--port",
            str(app_port),
        ],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        log = []
        while not any("Chat running at" in line for line in log):
            line = proc.stderr.readline()
            assert line, "".join(log)
            log.append(line)
        assert not any("100%" in line for line in log)  # served before the download finished
        url = f"http://127.0.0.1:{app_port}/"
        assert httpx.get(url + "config", timeout=10).status_code == 200
        hub.gate.set()
        client = Client(url, verbose=False)
        reply = client.predict(
            message="Say hello.", max_new_tokens=8, api_name="/chat"
        )  # waits for the model
        assert reply
        client.close()
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=20)[1]
        hub.gate.set()
        hub.shutdown()
    assert "Downloading testorg/tiny-GGUF:*Q4_1.gguf: 100%" in "".join(log) + rest


def test_loading_statuses_are_shown_in_the_readers_language(local_backend) -> None:
    """The status is set by the loading thread (no reader yet); each reader sees it in their own
    language: the page's waiting line, and the API's waiting frame."""
    from chat.i18n import Phrase, t, translated
    from chat.service.replies import frame
    from chat.service.tracking import RequestRecord
    from chat.ui import ChatHandlers

    def slow_load(report) -> Backend:  # noqa: ANN001
        for step in range(3):
            report(Phrase("loading.downloading", label="org/repo", percent=step * 40, done=step, total=3))
            time.sleep(0.4)
        return local_backend

    pending = PendingBackend("local", "org/repo:model.gguf", slow_load, n_ctx=2048)
    status = pending.status
    assert status.startswith(("Starting", "Downloading")) and translated(status, "zh").startswith("正在")
    assert Phrase("loading.starting") == "Starting…"  # a Phrase is its English text, for logs
    waiting = Waiting(
        position=0, status=Phrase("loading.downloading", label="x", percent=40, done=1, total=3)
    )
    assert frame(waiting, RequestRecord("rest"), "zh")[1]["status"] == "正在下载 x：40%（1 / 3 MB）"

    handlers = ChatHandlers(ChatEngine({"local": pending}))
    seen = [str(update) for update in frames(handlers.ui("你好", [], "", 0.7, 2048, 8, 0.95))]
    assert any(
        t("notice.loading", "zh", status="").split("（")[0] in line and "正在下载" in line for line in seen
    )
