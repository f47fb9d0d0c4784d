"""Backends by name (issue 9, "one pipeline underneath"): one registry, one explicit contract.

A backend registered under a new name is accepted by the settings, built by the factory and
answers through the engine; /readyz and /metrics read what they show from the ``Backend``
contract, not from a backend's private fields.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import httpx
import pytest
from guard_fakes import ScriptedBackend
from service_support import metric, scrape, serve

from chat import ChatEngine, ConfigError, Settings
from chat.backends import registry
from chat.backends.base import Backend
from chat.backends.local.loading import PendingBackend
from chat.factory import build_engine
from chat.messages import Message
from chat.service.health import local_ready


class Contracted(ScriptedBackend):
    """A scripted backend that declares every optional part of the contract."""

    name = "echo"
    model = "echo-1"
    accepts_api_key = True

    def __init__(self, chunks: Sequence[str], *, depth: int | None, why_not: str | None) -> None:
        super().__init__(chunks)
        self.depth = depth
        self.why_not = why_not

    @property
    def queue_depth(self) -> int | None:
        return self.depth

    def readiness(self) -> str | None:
        return self.why_not


def test_the_built_in_backends_are_registered_by_name() -> None:
    assert registry.names()[:2] == ("local", "cloud")
    with pytest.raises(ConfigError, match="unknown backend 'gpu': use local or cloud"):
        Settings(backend="gpu")
    with pytest.raises(ConfigError, match="needs --api-base-url"):
        Settings(fallback=("cloud",))


def test_a_registered_backend_is_accepted_built_and_answers_then_goes_away() -> None:
    built: list[Settings] = []

    def build(settings: Settings, **_: object) -> Backend:
        built.append(settings)
        return Contracted(["hello ", "there"], depth=None, why_not=None)

    registry.register("echo", build)
    try:
        settings = Settings(backend="echo", cache=False)
        engine = build_engine(settings)
        assert list(engine.backends) == ["echo"] and built == [settings]
        assert engine.reply([{"role": "user", "content": "hi"}]).text == "hello there"
    finally:
        registry.unregister("echo")
    with pytest.raises(ConfigError, match="unknown backend 'echo'"):
        Settings(backend="echo")


def test_override_replaces_a_builder_only_within_the_block() -> None:
    scripted = ScriptedBackend(["local stand-in"])
    original = registry._REGISTRY["local"]
    with registry.override("local", lambda settings, **_: scripted):
        engine = build_engine(Settings(cache=False))
        assert engine.backends["local"] is scripted
    assert registry._REGISTRY["local"] is original


def test_importing_settings_registry_and_factory_loads_no_model() -> None:
    code = (
        "import sys; import chat.settings, chat.backends.registry, chat.factory; "
        "print('llama_cpp' in sys.modules, 'chat.backends.local.backend' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_readiness_and_queue_depth_come_from_the_contract() -> None:
    assert local_ready(ScriptedBackend(["x"])) == {"ready": True}
    closed = Contracted(["x"], depth=None, why_not="model closed")
    assert local_ready(closed) == {"ready": False, "reason": "model closed"}
    assert ScriptedBackend(["x"]).queue_depth is None  # a backend without a queue says so


def test_a_loading_backend_reports_its_progress_then_the_loaded_backends_state() -> None:
    import threading

    go = threading.Event()
    inner = Contracted(["x"], depth=2, why_not=None)

    def load(report):  # noqa: ANN001, ANN202
        report("Downloading 50%")
        go.wait(10)
        return inner

    pending = PendingBackend("local", "org/repo:model.gguf", load, n_ctx=512)
    try:
        assert pending.queue_depth is None
        assert pending.readiness() in ("Starting…", "Downloading 50%")
        assert pending.response_formats == frozenset({"text"})
    finally:
        go.set()
    pending.wait(10)
    assert pending.readiness() is None and pending.queue_depth == 2


def test_readyz_metrics_and_models_over_a_registered_backend() -> None:
    backend = Contracted(["hi"], depth=3, why_not="warming up")
    engine = ChatEngine({"echo": backend})
    with serve(engine, full=False) as base:
        ready = httpx.get(base + "readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["backends"]["echo"] == {
            "model": "echo-1",
            "primary": True,
            "ready": False,
            "reason": "warming up",
        }
        backend.why_not = None
        assert httpx.get(base + "readyz", timeout=10).status_code == 200
        assert metric(scrape(base), "chat_queue_depth", backend="echo") == 3
    assert engine.reply([Message("user", "hi")]).text == "hi"


@pytest.mark.parametrize("keyed", [False, True])
def test_the_ui_offers_a_key_field_when_a_backend_accepts_a_session_key(keyed: bool) -> None:
    from chat.ui import build_ui

    backends: dict[str, Backend] = {"scripted": ScriptedBackend(["x"])}
    if keyed:
        backends["echo"] = Contracted(["x"], depth=None, why_not=None)
    demo = build_ui(ChatEngine(backends), personas={"p": "You help."}, max_context=2048)
    fields = [
        c["props"] for c in demo.get_config_file()["components"] if c["props"].get("elem_id") == "api-key"
    ]
    assert len(fields) == 1 and fields[0]["visible"] is keyed
