"""What each sequence of the batched context holds, and how a new prompt reuses it.

A request takes a free slot (sequence id). The slot is chosen for what it already holds: the slot
whose tokens share the longest prefix with the prompt (a conversation coming back finds its own
state), else a saved state from the prompt cache restored into the least recently used free slot,
else a prefix copied from any slot (the system prompt every chat of a persona starts with). A
slot's state is saved to the prompt cache before it is overwritten. Only the scheduler's thread
calls these: they touch the llama.cpp context.
"""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np

from chat.backends.local.jobs import Slot
from chat.backends.local.prompt_cache import SAVE_MIN_TOKENS, PromptCache, common_prefix

COPY_MIN_TOKENS = 16  # a prefix is copied from another slot when it saves at least this much


class SlotStates:
    """The slots' KV cells in one unified pool, and the prompt cache behind them."""

    def __init__(self, ctx: Any, slots: list[Slot], prompt_cache: PromptCache) -> None:
        self.ctx = ctx
        self.slots = slots
        self.prompt_cache = prompt_cache
        self._memory = llama_cpp.llama_get_memory(ctx)

    def choose(self, prompt: np.ndarray, free: list[Slot]) -> Slot:
        """The free slot that already holds most of the prompt, else the least recently used."""
        best = max(free, key=lambda s: (common_prefix(s.tokens, prompt), -s.used_at))
        if common_prefix(best.tokens, prompt) >= COPY_MIN_TOKENS:
            return best
        return min(free, key=lambda s: s.used_at)

    def prepare(self, slot: Slot, prompt: np.ndarray, *, alone: bool) -> int:
        """Make the slot's cells the best available prefix of ``prompt``; the tokens kept. At
        least the prompt's last token is left to evaluate: its logits pick the first reply token.
        ``alone``: the whole pool is emptied first, as on a fresh context."""
        if alone:
            self.clear_for(slot)
        kept = min(0 if alone else self._reuse(slot, prompt), len(prompt) - 1)
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, kept, -1)
        slot.tokens = prompt[:kept].copy()
        return kept

    def _reuse(self, slot: Slot, prompt: np.ndarray) -> int:
        """Tokens of ``prompt`` the slot holds after restoring or copying the best prefix."""
        own = common_prefix(slot.tokens, prompt)
        entry_id, saved = self.prompt_cache.best(prompt)
        donor, shared = None, 0
        for other in self.slots:
            if other is not slot:
                n = common_prefix(other.tokens, prompt)
                if n > shared:
                    donor, shared = other, n
        if max(saved, shared) < own + COPY_MIN_TOKENS:
            self.save(slot, keep=own)
            return own
        if saved > shared and entry_id is not None:
            entry = self.prompt_cache.get(entry_id)
            if saved >= len(entry.tokens) - SAVE_MIN_TOKENS:
                # the prompt takes (nearly) all of it: out of the cache before the slot is saved,
                # so saving cannot evict it first; otherwise the entry stays for its own conversation
                self.prompt_cache.pop(entry_id)
            self.save(slot)
            restored = self.prompt_cache.restore(self.ctx, slot.seq, entry)
            if restored is not None:
                slot.tokens = restored
                return saved
            self.empty(slot)
            return 0
        self.save(slot)
        self.empty(slot)
        # the donor's whole sequence, then what follows the shared prefix dropped: across streams
        # llama.cpp copies whole streams only (in one pool the cells are shared, nothing is copied)
        llama_cpp.llama_memory_seq_cp(self._memory, donor.seq, slot.seq, -1, -1)
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, shared, -1)
        slot.tokens = prompt[:shared].copy()
        return shared

    def clear_for(self, alone: Slot) -> None:
        """Empty the whole KV cache (the idle slots' states saved first), so ``alone`` runs as on
        a fresh context: other sequences' cells change how attention's sums are grouped."""
        self.save(alone)
        alone.tokens = alone.tokens[:0]
        self.empty_idle(save=True)
        llama_cpp.llama_memory_clear(self._memory, True)

    def empty_idle(self, *, save: bool) -> bool:
        """Empty the idle slots' KV cells (saved to the prompt cache first when ``save``);
        False when none held any."""
        held = [slot for slot in self.slots if slot.job is None and len(slot.tokens)]
        for slot in held:
            if save:
                self.save(slot)
            self.empty(slot)
        return bool(held)

    def empty(self, slot: Slot) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
        slot.tokens = slot.tokens[:0]

    def save(self, slot: Slot, *, keep: int = 0) -> None:
        """Save the slot's state to the prompt cache when the new content overwrites more than
        ``SAVE_MIN_TOKENS`` of it (all but its first ``keep`` tokens are overwritten)."""
        if len(slot.tokens) - keep > SAVE_MIN_TOKENS:
            self.prompt_cache.save(self.ctx, slot.seq, slot.tokens)
