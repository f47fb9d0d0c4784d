"""Continuous batching: several conversations share one llama.cpp context and one decode per step.

On a CPU, decoding is bound by reading the weights; one ``llama_decode`` over the next token of
every active sequence reads them once for all. One thread owns the context. Each step it builds
one batch: the pending token of every decoding sequence, plus up to ``PREFILL_CHUNK`` prompt
tokens for each sequence still being evaluated (so a long prompt never stalls the others for more
than a chunk, and prompts that arrive together are evaluated together); decodes it; and lets each
sequence sample from its own logits with its own chain.

The KV cache is one unified pool of ``n_ctx x parallel`` cells: every sequence may grow to the
per-conversation window ``n_ctx`` (fitting, notices and summaries work as with one sequence), and
all of them at full length still fit. Unified cells let a sequence copy a prefix from another
(``llama_memory_seq_cp`` shares the cells, nothing is evaluated or copied).

A request takes a free slot (sequence id), chosen for what it already holds, and reuses the best
prefix of its prompt the pool or the prompt cache has (``chat.backends.local.slot_states``). More
requests than slots wait first-come, first-served.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._utils import suppress_stdout_stderr

from chat.backends.base import Finish
from chat.backends.local.jobs import Job, Slot, ended
from chat.backends.local.prompt_cache import PromptCache
from chat.backends.local.sampling import Outputs, SamplerChain, TextOut, Vocabulary
from chat.backends.local.slot_states import SlotStates
from chat.errors import Unavailable

log = logging.getLogger(__name__)

PREFILL_CHUNK = 128  # prompt tokens evaluated per step for each sequence still prefilling
N_BATCH = 512  # llama.cpp's batch: every decoding sequence's token plus the prefill chunk
# When the model's threads take every core, the scheduler waits (at most this long) before a step
# until each replying sequence's reader has taken its last token: decoding while the readers'
# Python runs would put more busy threads than cores, and llama.cpp's threads, which spin at every
# barrier, then stall. With a core to spare, readers run beside the decode.
READER_WAIT = 0.02
# Flash attention skips other sequences' cells, where plain attention multiplies the whole pool
# (idle slots' kept conversations too), and saves a slot's state in one copy per layer (V is not
# transposed): 2 ms against 24 ms for 180 tokens. bench/bench_attention.py compares the layouts.
FLASH_ATTENTION = True
KV_UNIFIED = True  # one pool (prefixes shared for free), not a stream of n_ctx cells per slot


def prefill_budget(decoding: int, prefilling: int) -> int:
    """Prompt tokens one step evaluates beside ``decoding`` sequences' next tokens: a chunk per
    prompt, so a long prompt stalls the decoding sequences by one chunk at most and users who
    arrive together get their first tokens together; with nobody decoding, a whole batch."""
    if decoding == 0:
        return N_BATCH
    return min(N_BATCH - decoding, PREFILL_CHUNK * prefilling)


class Scheduler:
    """Owns a llama.cpp context of ``parallel`` sequences and the one thread that decodes it."""

    def __init__(
        self,
        llm: Any,
        *,
        n_ctx: int,
        parallel: int,
        prompt_cache: PromptCache,
    ) -> None:
        self.n_ctx = n_ctx
        self.parallel = parallel
        self._vocab = Vocabulary(llm._model.vocab)  # noqa: SLF001 - the handle llama.cpp's API needs
        # the handle's own settings (attention kind, RoPE, threads), with room for every sequence
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx * parallel
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = parallel
        params.kv_unified = KV_UNIFIED
        if FLASH_ATTENTION:
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = False
        self._await_readers_first = params.n_threads_batch >= (os.cpu_count() or 1)
        # quiet, as the handle was loaded: llama.cpp warns that a sequence could outgrow the model's
        # training window, since it sees the whole pool; each is held to n_ctx here
        with suppress_stdout_stderr(disable=False):
            self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)  # noqa: SLF001
        if not self.ctx:
            raise ValueError("failed to create the batched llama.cpp context")
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._slots = [Slot(seq) for seq in range(parallel)]
        self._states = SlotStates(self.ctx, self._slots, prompt_cache)
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._resets: list[threading.Event] = []
        self.steps = 0
        self.batch_tokens = 0  # tokens decoded in all steps (batch size per step = this / steps)
        self._thread = threading.Thread(target=self._run, name="llama-scheduler", daemon=True)
        self._thread.start()

    # -- what request threads call ------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("the model is closed")
            self._waiting.append(job)
            self._cond.notify_all()

    def position(self, job: Job) -> int:
        """1 for the next request to get a slot; 0 once it has one."""
        with self._cond:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return 0

    def wake(self) -> None:
        """Look at the waiting requests now (one was cancelled)."""
        with self._cond:
            self._cond.notify_all()

    def has_room(self) -> bool:
        """Every request waiting gets a slot at the next look (a new one is served at once)."""
        return self.active + len(self._waiting) <= self.parallel

    @property
    def depth(self) -> int:
        """Requests waiting plus those holding a slot."""
        with self._cond:
            return len(self._waiting) + self.active

    @property
    def active(self) -> int:
        return sum(slot.job is not None for slot in self._slots)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def reset(self) -> None:
        """Empty every idle slot's KV cells, between two steps (a slot in use keeps its own)."""
        done = threading.Event()
        with self._cond:
            if self._closing:
                return
            self._resets.append(done)
            self._cond.notify_all()
        done.wait(30)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=60)
        if self._thread.is_alive():  # a step outlived the wait: its memory stays with it
            log.warning("the scheduler did not stop within 60 s; its llama.cpp context is left allocated")
            return
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self.ctx)
        self.ctx = None

    # -- the scheduler thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closing or self._waiting or self._resets or self.active):
                    self._cond.wait()
                if self._closing:
                    break
                resets, self._resets = self._resets, []
                admit = self._admissible()
            if resets:
                self._states.empty_idle(save=False)
                for done in resets:
                    done.set()
            for job, slot in admit:
                self._start(job, slot)
            if self.active:
                if self._await_readers_first:
                    self._await_readers()
                try:
                    self._step()
                except Exception as exc:  # noqa: BLE001 - a failed step ends its requests, not the thread
                    log.exception("a decoding step failed")
                    self._fail_all(Unavailable(f"the local model failed a step: {exc}", backend="local"))
            elif not admit:
                with self._cond:
                    self._cond.wait(0.05)  # only cancelled requests wait: look again shortly
        self._fail_all(Unavailable("the local model is closed", backend="local"))
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
            resets, self._resets = self._resets, []
        for job in waiting:
            job.out.put(Finish("cancelled"))
            job.admitted.set()
        for done in resets:
            done.set()

    def _await_readers(self) -> None:
        """Wait (briefly) until each replying sequence's reader is back for its next token."""
        end = time.monotonic() + READER_WAIT
        for slot in self._slots:
            job = slot.job
            if job is None or slot.pending or job.cancel.is_set() or job.out.qsize() > 1:
                continue  # prefilling, ending, or a reader already behind: nothing to wait for
            while not (job.reading.is_set() and job.out.empty()):
                left = end - time.monotonic()
                if left <= 0:
                    return
                job.reading.wait(min(left, 0.002))

    def _admissible(self) -> list[tuple[Job, Slot]]:
        """Pop the requests that get a slot now (under the lock), each with the slot it takes."""
        for job in [j for j in self._waiting if j.cancel.is_set()]:
            self._waiting.remove(job)
            job.admitted.set()
            job.out.put(Finish("cancelled"))
        admit: list[tuple[Job, Slot]] = []
        free = [s for s in self._slots if s.job is None]
        busy = len(self._slots) - len(free)
        if any(s.job is not None and s.job.exclusive for s in self._slots):
            return admit
        for job in list(self._waiting):
            if not free:
                break
            if job.exclusive and (busy or admit):
                break  # runs alone: wait for the running ones to end
            slot = self._states.choose(np.asarray(job.tokens, dtype=np.intc), free)
            free.remove(slot)
            self._waiting.remove(job)
            slot.job = job  # claimed under the lock, so ``active`` counts it
            admit.append((job, slot))
            if job.exclusive:
                break
        return admit

    def _start(self, job: Job, slot: Slot) -> None:
        """Make the slot's KV cells the best available prefix of the prompt; evaluate the rest."""
        prompt = np.asarray(job.tokens, dtype=np.intc)
        try:
            kept = self._states.prepare(slot, prompt, alone=job.exclusive)
            slot.pending = list(job.tokens[kept:])
            slot.cached = kept
            slot.generated = 0
            slot.chain = SamplerChain(self._vocab, job.sampling)
            slot.text = TextOut(self._vocab, job.stop)
            slot.used_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - a bad grammar ends its own request only
            self._finish(slot, None, error=exc)
            return
        finally:
            job.admitted.set()

    def _step(self) -> None:
        batch = self._batch
        n = 0
        for slot in self._slots:
            slot.index = -1
            job = slot.job
            if job is None or slot.pending:
                continue
            if (reason := ended(job)) is not None:
                self._finish(slot, reason)
                continue
            n = self._add(batch, n, slot, [slot.last], logits=True)
        prefilling = sorted(
            (s for s in self._slots if s.job is not None and s.pending), key=lambda s: s.used_at
        )
        budget = prefill_budget(n, len(prefilling))
        for slot in prefilling:
            if (reason := ended(slot.job)) is not None:
                self._finish(slot, reason)
                continue
            if budget <= 0:
                break
            chunk = slot.pending[:budget]
            n = self._add(batch, n, slot, chunk, logits=len(chunk) == len(slot.pending))
            del slot.pending[: len(chunk)]
            budget -= len(chunk)
        if n == 0:
            return
        batch.n_tokens = n
        status = llama_cpp.llama_decode(self.ctx, batch)
        # no room for the batch: the idle slots' cells go first
        if status == 1 and self._states.empty_idle(save=True):
            status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        self.steps += 1
        self.batch_tokens += n
        outputs = Outputs(self.ctx, [s.index for s in self._slots if s.index >= 0], self._vocab.size)
        for slot in self._slots:
            if slot.index >= 0 and slot.job is not None:
                self._sampled(slot, slot.chain.sample(outputs, slot.index))

    def _add(self, batch: Any, n: int, slot: Slot, tokens: list[int], *, logits: bool) -> int:
        position = len(slot.tokens)
        for offset, token in enumerate(tokens):
            batch.token[n] = token
            batch.pos[n] = position + offset
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq
            batch.logits[n] = False
            n += 1
        if logits:
            batch.logits[n - 1] = True
            slot.index = n - 1
        slot.evaluated(tokens)
        return n

    def _sampled(self, slot: Slot, token: int) -> None:
        job = slot.job
        if token in self._vocab.ends:
            self._finish(slot, "stop")
            return
        slot.generated += 1
        text, stopped = slot.text.push(token)
        if text:
            job.reading.clear()
            job.out.put(text)
        if stopped:
            slot.text = None  # what it held back is the stop string's start: never shown
            self._finish(slot, "stop")
        elif slot.generated >= job.max_tokens or len(slot.tokens) + 1 >= self.n_ctx:
            self._finish(slot, "length")
        else:
            slot.last = token

    def _finish(self, slot: Slot, reason: str | None, *, error: BaseException | None = None) -> None:
        job = slot.job
        if slot.chain is not None:
            slot.chain.free()
            slot.chain = None
        if slot.pending:  # a prefill cut short: what it evaluated is still a valid prefix
            slot.pending = []
        if job is not None:
            if error is not None:
                job.out.put(error)
            else:
                tail = slot.text.flush() if slot.text is not None else ""
                if tail:
                    job.out.put(tail)
                job.out.put(
                    Finish(
                        reason or "stop",
                        prompt_tokens=len(job.tokens),
                        completion_tokens=slot.generated,
                        cached_prompt_tokens=slot.cached,
                    )
                )
        slot.job, slot.text = None, None
        slot.used_at = time.monotonic()
        with self._cond:
            self._cond.notify_all()

    def _fail_all(self, exc: BaseException) -> None:
        for slot in self._slots:
            if slot.job is not None:
                self._states.empty(slot)
                self._finish(slot, None, error=exc)
