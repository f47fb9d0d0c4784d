"""A prompt cache per conversation for the in-process model: only new tokens are evaluated.

llama.cpp keeps one sequence (the *live* one) in the model's KV cache; llama-cpp-python reuses its
longest common prefix with the next prompt. That alone serves one conversation, but as soon as a
second one takes a turn, the first loses its state and re-evaluates from the start. So before
the live sequence is overwritten, its KV cells are saved with ``llama_state_seq_get_data`` into a
byte-bounded LRU, keyed by their tokens; when a prompt comes back, the saved state with the
longest common prefix is restored with ``llama_state_seq_set_data``, and only the rest of the
prompt is evaluated. An entry is keyed by tokens, not by a conversation id, so an edited, undone
or retried conversation restores what it still shares and evaluates from the first changed token.

Why not llama-cpp-python's ``LlamaRAMCache``: it saves the whole context state plus a copy of the
score matrix (``n_batch x n_vocab`` floats: 100 MB for SmolLM2) after every reply, not only when
another conversation needs the model, and it ranks entries by comparing the prompt with the
saved ``input_ids`` buffer past ``n_tokens`` (stale tokens of older, longer prompts count as a
match). Sequence state is only the KV cells of one sequence: about 23 KB per token for SmolLM2.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
SEQ = 0  # the one sequence llama-cpp-python decodes into
# The live sequence is saved before a prompt overwrites more than this many of its tokens.
# (Saving costs a copy of its KV cells; a retry saves the discarded reply too, which LRU drops.)
SAVE_MIN_TOKENS = 8
# A saved state is restored when it shares this many more tokens with the prompt than the live one.
RESTORE_MIN_GAIN = 16


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays (vectorised)."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


@dataclass
class _Entry:
    tokens: np.ndarray
    state: np.ndarray  # bytes of llama_state_seq data (numpy: allocated without a zero-fill)

    @property
    def nbytes(self) -> int:
        return self.state.nbytes + self.tokens.nbytes


@dataclass(frozen=True)
class Reuse:
    """What ``PromptCache.prepare`` did for one prompt."""

    cached_tokens: int  # prompt tokens that will not be evaluated again
    restored: bool  # a saved state was loaded into the model


class PromptCache:
    """Saved sequence states, least recently used first, at most ``max_bytes`` in all.

    Not thread-safe on its own: the local backend calls it while holding the model's turn.
    ``max_bytes=0`` turns saving off (only the live sequence's own prefix is reused).
    """

    def __init__(self, llm: Any, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._llm = llm
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_id = 0
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    # -- the one call the backend makes before each generation --------------------------------

    def prepare(self, prompt: Sequence[int]) -> Reuse:
        """Make the model's live sequence the best available prefix of ``prompt``.

        Saves the live sequence when the prompt would overwrite a meaningful part of it, and
        restores a saved state when it shares clearly more of the prompt than the live one.
        """
        tokens = np.asarray(prompt, dtype=np.intc)
        live = self._live_tokens()
        live_prefix = common_prefix(live, tokens)
        best_id, best_prefix = self.best(tokens)
        restore = best_id is not None and best_prefix >= live_prefix + RESTORE_MIN_GAIN
        # A restored entry moves into the model (the live sequence then holds all of it), so it
        # leaves the cache before the live sequence is saved: saving cannot evict it first.
        entry = self._drop(best_id) if restore else None
        # Either way, what the live sequence holds beyond the prompt is overwritten.
        if len(live) - live_prefix > SAVE_MIN_TOKENS:
            self._save_live(live)
        kept = live_prefix
        if entry is not None:
            kept = best_prefix if self._restore(entry) else 0
        # llama-cpp-python evaluates at least the prompt's last token, to get fresh logits.
        return Reuse(cached_tokens=min(kept, max(len(tokens) - 1, 0)), restored=entry is not None)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    # -- internals ----------------------------------------------------------------------------

    def _live_tokens(self) -> np.ndarray:
        return np.array(self._llm.input_ids[: self._llm.n_tokens], dtype=np.intc)

    def best(self, tokens: np.ndarray) -> tuple[int | None, int]:
        """The saved entry sharing the longest prefix with ``tokens``, and that prefix's length."""
        best_id, best_prefix = None, 0
        for entry_id, entry in self._entries.items():
            prefix = common_prefix(entry.tokens, tokens)
            if prefix > best_prefix:
                best_id, best_prefix = entry_id, prefix
        return best_id, best_prefix

    def _save_live(self, live: np.ndarray) -> None:
        self.save(self._llm.ctx, SEQ, live)

    def save(self, ctx: Any, seq: int, tokens: np.ndarray) -> None:
        """Keep sequence ``seq``'s KV cells, which hold ``tokens``, unless an entry holds them all."""
        if self.max_bytes <= 0 or len(tokens) == 0:
            return
        shared = {i: common_prefix(e.tokens, tokens) for i, e in self._entries.items()}
        if any(n == len(tokens) for n in shared.values()):
            return  # a saved entry already holds all of it
        # Entries the sequence extends say nothing it does not: drop them.
        for entry_id in [i for i, n in shared.items() if n == len(self._entries[i].tokens)]:
            self._drop(entry_id)
        size = _llama().llama_state_seq_get_size(ctx, seq)
        if size <= 0 or size + tokens.nbytes > self.max_bytes:
            return
        state = np.empty(size, dtype=np.uint8)
        written = _llama().llama_state_seq_get_data(ctx, _pointer(state), size, seq)
        if written != size:
            return
        self._evict_for(size + tokens.nbytes)
        entry = _Entry(tokens.copy(), state)
        self._entries[self._next_id] = entry
        self._next_id += 1
        self.bytes += entry.nbytes

    def get(self, entry_id: int) -> _Entry:
        return self._entries[entry_id]

    def pop(self, entry_id: int) -> _Entry:
        """Take an entry out (to restore it: the sequence then holds it, saving it is the caller's)."""
        return self._drop(entry_id)

    def restore(self, ctx: Any, seq: int, entry: _Entry) -> np.ndarray | None:
        """Load ``entry`` into sequence ``seq``: its tokens, or None if llama.cpp refused it."""
        read = _llama().llama_state_seq_set_data(ctx, _pointer(entry.state), entry.state.nbytes, seq)
        return entry.tokens if read else None

    def _restore(self, entry: _Entry) -> bool:
        """Load ``entry`` as the live sequence; False (and an empty model) if llama.cpp refused it."""
        llm = self._llm
        if self.restore(llm.ctx, SEQ, entry) is None:  # llama.cpp cleared the sequence
            llm.reset()
            return False
        n = len(entry.tokens)
        llm.input_ids[:n] = entry.tokens
        llm.n_tokens = n
        # The model's logits belong to the sequence that was live before: make llama-cpp-python
        # decode at least one token before it samples (the flag its own load_state sets).
        llm._requires_eval = True  # noqa: SLF001
        return True

    def _evict_for(self, size: int) -> None:
        while self._entries and self.bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    def _drop(self, entry_id: int) -> _Entry:
        entry = self._entries.pop(entry_id)
        self.bytes -= entry.nbytes
        return entry


def _pointer(buffer: np.ndarray) -> Any:
    return buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


def _llama() -> Any:
    import llama_cpp

    return llama_cpp
