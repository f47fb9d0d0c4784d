"""Load the local model in the background, so the server answers while a Hub download runs.

Until the model is ready, requests wait in ``prepare()`` and see the download or load progress
(as ``Waiting`` events with a status), and the UI shows a banner. Local files still load
before the server starts, so a bad file is a one-line start-up error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from chat.backends.base import Backend, Chunk
from chat.errors import ChatError, ConfigError
from chat.i18n import Phrase
from chat.messages import GenerationParams, Message, Waiting

POLL_SECONDS = 0.5


class PendingBackend(Backend):
    """Stands in for a backend that is still being downloaded or loaded."""

    def __init__(
        self,
        name: str,
        model: str,
        load: Callable[[Callable[[str], None]], Backend],
        *,
        n_ctx: int,
        response_formats: frozenset[str] = Backend.response_formats,
    ) -> None:
        self.name = name
        self.model = model
        self._formats = response_formats  # what the backend being loaded will honour
        self.status: str = Phrase("loading.starting")
        self.error: ChatError | None = None
        self._n_ctx = n_ctx
        self._backend: Backend | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(load,), name=f"load-{name}", daemon=True)
        self._thread.start()

    def _run(self, load: Callable[[Callable[[str], None]], Backend]) -> None:
        try:
            self._backend = load(self._report)
            self.model = self._backend.model
            self.status = Phrase("loading.ready")
        except ChatError as exc:
            self.error = exc
            self.status = Phrase("loading.failed", error=exc)
        except Exception as exc:  # noqa: BLE001 - a load thread must never die silently
            self.error = ConfigError(f"{type(exc).__name__} while loading the model")
            self.status = Phrase("loading.failed", error=self.error)
        finally:
            self._done.set()

    def _report(self, message: str) -> None:
        self.status = message

    @property
    def ready(self) -> bool:
        return self._backend is not None

    def wait(self, timeout: float | None = None) -> Backend:
        """Block until loaded (for non-streaming callers); raise the load error if it failed."""
        self._done.wait(timeout)
        if self.error is not None:
            raise self.error
        if self._backend is None:
            raise ConfigError("the model is still loading")
        return self._backend

    # -- Backend -----------------------------------------------------------------------------

    def prepare(self, cancel: threading.Event | None = None) -> Iterator[Waiting]:
        while not self._done.wait(POLL_SECONDS):
            if cancel is not None and cancel.is_set():
                return
            yield Waiting(position=0, status=self.status)
        self.wait()

    def context_window(self) -> int | None:
        return self._backend.context_window() if self._backend else self._n_ctx

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.wait().count_tokens(messages)

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        return self.wait().stream(messages, params, cancel=cancel, api_key=api_key)

    @property
    def queue_depth(self) -> int | None:
        return self._backend.queue_depth if self._backend is not None else None

    @property
    def response_formats(self) -> frozenset[str]:  # type: ignore[override] - the loaded backend's
        return self._backend.response_formats if self._backend is not None else self._formats

    def readiness(self) -> str | None:
        if self._backend is not None:
            return self._backend.readiness()
        return self.status or "model loading"

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
