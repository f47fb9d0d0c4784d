"""Build the engine a ``Settings`` describes: backends, fallback chain, guards, cache."""

from __future__ import annotations

from collections.abc import Callable

from chat.backends.base import Backend
from chat.cache import build_cache
from chat.engine import ChatEngine
from chat.guards import build_guard
from chat.loading import PendingBackend
from chat.models import needs_download
from chat.retry import RetryPolicy
from chat.settings import Settings


def build_local_backend(settings: Settings, *, progress: Callable[[str], None] | None = None) -> Backend:
    from chat.backends.llama_cpp import LlamaCppBackend
    from chat.models import resolve_model

    path = resolve_model(settings.model, progress=progress)
    if progress:
        progress(f"Loading {path.name}…")
    return LlamaCppBackend(
        path, n_ctx=settings.n_ctx, n_gpu_layers=settings.n_gpu_layers, n_threads=settings.threads
    )


def build_cloud_backend(settings: Settings) -> Backend:
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


def build_engine(
    settings: Settings | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    background: bool = False,
) -> ChatEngine:
    """The engine for ``settings``; loads the local model only when a chain needs it.

    ``background=True`` downloads a Hub model in a thread (the server can start at once and
    show progress); a local or cached model always loads here, so bad files fail at start-up.
    """
    settings = settings or Settings()
    names = [settings.backend, *(n for n in settings.fallback if n != settings.backend)]
    backends: dict[str, Backend] = {}
    for name in names:
        if name == "local" and background and needs_download(settings.model):
            backends[name] = PendingBackend(
                "local",
                settings.model,
                lambda report: build_local_backend(settings, progress=_both(report, progress)),
                n_ctx=settings.n_ctx,
            )
        elif name == "local":
            backends[name] = build_local_backend(settings, progress=progress)
        elif name == "cloud":
            backends[name] = build_cloud_backend(settings)
    guard = build_guard(settings)
    return ChatEngine(
        backends,
        fallback=names[1:],
        retry=RetryPolicy(max_attempts=settings.max_attempts, total_timeout=settings.total_timeout),
        input_guard=guard,
        output_guard=guard,
        cache=build_cache(settings),
    )


def _both(first: Callable[[str], None], second: Callable[[str], None] | None) -> Callable[[str], None]:
    def report(message: str) -> None:
        first(message)
        if second is not None:
            second(message)

    return report
