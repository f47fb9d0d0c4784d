"""Backends by name: one table of builders, filled by the explicit ``register`` calls below.

Settings validation (``--backend``, ``--fallback``) and the factory read names from here, so a
new backend is one ``register`` call; the UI, /readyz and metrics read what a backend can do
from the ``Backend`` contract. Builders run lazily: importing this module never loads a GGUF
or opens a connection.

>>> register("echo", lambda settings, **_: EchoBackend())
>>> build("echo", settings)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chat.errors import ConfigError
from chat.i18n import Phrase
from chat.options import add_check

if TYPE_CHECKING:
    from chat.backends.base import Backend
    from chat.settings import Settings

Progress = Callable[[str], None]


class Builder(Protocol):
    def __call__(self, settings: Settings, *, progress: Progress | None, background: bool) -> Backend:
        """The backend ``settings`` describe; ``background``: load slow parts in a thread."""


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: how to build it, and what it needs from the settings."""

    name: str
    build: Builder
    check: Callable[[Settings], str | None] | None = None  # a configuration problem, or None


_REGISTRY: dict[str, BackendSpec] = {}


def register(name: str, builder: Builder, *, check: Callable[[Settings], str | None] | None = None) -> None:
    """Add (or replace) the backend called ``name``."""
    _REGISTRY[name] = BackendSpec(name, builder, check)


def unregister(name: str) -> None:
    """Remove ``name`` (tests that registered a backend remove it in ``finally``)."""
    _REGISTRY.pop(name, None)


@contextmanager
def override(name: str, builder: Builder) -> Iterator[None]:
    """Within the block, ``name`` builds with ``builder`` (tests: reuse a loaded model)."""
    previous = _REGISTRY.get(name)
    register(name, builder, check=previous.check if previous else None)
    try:
        yield
    finally:
        if previous is None:
            unregister(name)
        else:
            _REGISTRY[name] = previous


def names() -> tuple[str, ...]:
    """Registered backend names, in registration order."""
    return tuple(_REGISTRY)


def check(chosen: Iterable[str], settings: Settings) -> None:
    """Raise ``ConfigError`` for an unknown name or a backend these settings cannot build."""
    for name in dict.fromkeys(chosen):
        spec = _REGISTRY.get(name)
        if spec is None:
            raise ConfigError(f"unknown backend {name!r}: use {' or '.join(_REGISTRY)}")
        problem = spec.check(settings) if spec.check else None
        if problem:
            raise ConfigError(problem)


def build(
    name: str, settings: Settings, *, progress: Progress | None = None, background: bool = False
) -> Backend:
    """Build the backend called ``name`` (``check`` has already vetted the settings)."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(f"unknown backend {name!r}: use {' or '.join(_REGISTRY)}")
    return spec.build(settings, progress=progress, background=background)


# -- the built-in backends ---------------------------------------------------------------------


def build_local(settings: Settings, *, progress: Progress | None = None, background: bool = False) -> Backend:
    """The in-process llama.cpp model; with ``background``, a Hub download runs in a thread
    (the server starts at once and shows progress). A local or cached file loads here, so a bad
    file fails at start-up."""
    from chat.backends.local.backend import LlamaCppBackend
    from chat.backends.local.loading import PendingBackend
    from chat.backends.local.model_files import needs_download, resolve_model

    if background and needs_download(settings.model):
        return PendingBackend(
            "local",
            settings.model,
            lambda report: build_local(settings, progress=_both(report, progress)),
            n_ctx=settings.n_ctx,
            response_formats=LlamaCppBackend.response_formats,
        )
    model = settings.model or default_model(progress)
    path = resolve_model(model, progress=progress)
    if not model:  # the embedded default: its 16-bit copy, for the CPU's fast kernels
        from chat.backends.local import requantize
        from chat.store.database import data_dir

        path = requantize.cpu_copy(path, data_dir(settings.data_dir) / requantize.FOLDER)
    if progress:
        progress(Phrase("loading.file", name=path.name))
    return LlamaCppBackend(
        path,
        n_ctx=settings.n_ctx,
        n_gpu_layers=settings.n_gpu_layers,
        n_threads=settings.threads,
        prompt_cache_bytes=settings.prompt_cache_bytes,
        reproducible=settings.reproducible,
        parallel=settings.parallel,
    )


def default_model(progress: Progress | None = None) -> str:
    """What an empty ``CHAT_MODEL`` loads, said in the start-up log: the Chinese-capable model a
    Space preloaded into the Hub cache (``chat.backends.space_model``), else "" (the embedded
    SmolLM2)."""
    from chat.backends.space_model import preloaded_model

    found = preloaded_model()
    if progress:
        progress(Phrase("loading.preloaded", name=found.name) if found else Phrase("loading.embedded"))
    return str(found) if found else ""


def build_cloud(settings: Settings, *, progress: Progress | None = None, background: bool = False) -> Backend:
    """The OpenAI-compatible backend on the process-wide pooled HTTP client."""
    from chat.backends.openai_compat import OpenAICompatBackend, Timeouts, shared_http_client

    return OpenAICompatBackend(
        settings.api_base_url,
        settings.api_model,
        api_key=settings.api_key,
        client=shared_http_client(),
        timeouts=Timeouts(
            connect=settings.connect_timeout, read=settings.read_timeout, total=settings.total_timeout
        ),
    )


def _cloud_check(settings: Settings) -> str | None:
    if settings.api_base_url and settings.api_model:
        return None
    return "the cloud backend needs --api-base-url (OPENAI_BASE_URL) and --api-model (OPENAI_MODEL)"


def _both(first: Progress, second: Progress | None) -> Progress:
    def report(message: str) -> None:
        first(message)
        if second is not None:
            second(message)

    return report


register("local", build_local)
register("cloud", build_cloud, check=_cloud_check)
add_check(lambda chosen: check((chosen.backend, *chosen.fallback), chosen))
