"""A Space that speaks Chinese out of the box (issue 32): the README preloads a Qwen2.5 instruct GGUF
from the Hub, and with no CHAT_MODEL the app loads it when the Hub cache has it, else the embedded
SmolLM2; the start-up log and every reply's stats say which. The Hub is the loopback stand-in
(tests/fake_hub.py, serving the embedded GGUF under another name): the internet is not used."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import yaml
from fake_hub import FILENAME, REPO, serve
from support import free_port

from chat import ChatEngine, Done, GenerationParams, Settings
from chat.backends import space_model
from chat.backends.local.model_files import embedded_model_path
from chat.backends.registry import build_local

ROOT = Path(__file__).resolve().parent.parent


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_readme_preloads_the_model_the_app_looks_for() -> None:
    assert front_matter()["preload_from_hub"] == [f"{repo} {name}" for repo, name in space_model.PRELOADED]
    repo, name = space_model.PRELOADED[0]
    assert "Qwen2.5" in repo and "Instruct" in repo and name.endswith(".gguf")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache the app looks in, and the stand-in's file as the one to preload."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(space_model, "PRELOADED", (("Qwen/not-preloaded-GGUF", "x.gguf"), (REPO, FILENAME)))
    return cache


def test_a_preloaded_model_is_chosen_and_named(hub_cache: Path, data_dir: str) -> None:
    assert space_model.preloaded_model() is None  # nothing preloaded yet: the embedded model
    hub = serve(free_port(), embedded_model_path(), bytes_per_second=4e9)
    try:  # what the Space's build does for preload_from_hub
        huggingface_hub.snapshot_download(
            REPO,
            allow_patterns=[FILENAME],
            cache_dir=hub_cache,
            endpoint=f"http://127.0.0.1:{hub.server_port}",
        )
    finally:
        hub.shutdown()
    assert space_model.preloaded_model() == next(hub_cache.rglob(FILENAME))

    said: list[str] = []
    backend = build_local(Settings(n_ctx=256, data_dir=data_dir), progress=said.append)
    try:
        assert backend.model == FILENAME.removesuffix(".gguf")  # loaded as it is, no 16-bit copy
        assert said[0] == f"No model set: using {FILENAME}, preloaded from the Hugging Face Hub"
        events = list(
            ChatEngine({"local": backend}).stream(
                [{"role": "user", "content": "你好"}], GenerationParams(max_new_tokens=2)
            )
        )
        assert isinstance(events[-1], Done) and events[-1].stats.model == backend.model  # the stats say it
    finally:
        backend.close()


def test_without_a_preload_the_embedded_model_answers(hub_cache: Path, data_dir: str) -> None:
    said: list[str] = []
    backend = build_local(Settings(n_ctx=256, data_dir=data_dir), progress=said.append)
    try:
        assert backend.model.startswith("SmolLM2-135M-Instruct")
        assert said[0].startswith("No model set: using the embedded SmolLM2-135M")
    finally:
        backend.close()
    explicit = build_local(Settings(model=str(embedded_model_path()), n_ctx=256), progress=said.append)
    explicit.close()
    assert not any("No model set" in line for line in said[1:])  # CHAT_MODEL wins, nothing to say
