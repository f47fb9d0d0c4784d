"""Shared fixtures: the real embedded model, an engine over it, and the launched app."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from support import free_port  # noqa: E402

from chat import ChatEngine, Settings  # noqa: E402
from chat.backends.llama_cpp import LlamaCppBackend  # noqa: E402
from chat.factory import build_local_backend  # noqa: E402

TEST_N_CTX = 2048


@pytest.fixture(scope="session")
def local_backend() -> Iterator[LlamaCppBackend]:
    """The embedded SmolLM2-135M, loaded once: a real llama.cpp model, no mock."""
    backend = build_local_backend(Settings(n_ctx=TEST_N_CTX))
    yield backend
    backend.close()


@pytest.fixture
def engine(local_backend: LlamaCppBackend) -> ChatEngine:
    return ChatEngine({"local": local_backend})


@pytest.fixture(scope="session")
def app_url(local_backend: LlamaCppBackend) -> Iterator[str]:
    """The Gradio app, launched for real on a free loopback port."""
    from chat.personas import load_personas
    from chat.ui import I18N, build_ui

    engine = ChatEngine({"local": local_backend})
    demo = build_ui(engine, personas=load_personas(), max_context=local_backend.context_window())
    demo.queue(max_size=64)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, i18n=I18N
    )
    yield url
    demo.close()
