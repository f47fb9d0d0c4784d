"""The local backend: one in-process llama.cpp model shared by every session.

With ``--parallel`` above 1 (the default: 8 or 4, ``kv_budget``), a ``Scheduler`` decodes several conversations in one
batch per step; with 1, generation is serialised by a ``TurnQueue``. Either way, closing the
stream (Stop, a closed tab) ends generation within a token and frees the model for the next
request. Each prompt is rendered with the GGUF's own chat template and tokenized once; a
``PromptCache`` keeps conversations' evaluated prefixes, so a returning conversation evaluates
only its new tokens.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cachetools import LRUCache, cachedmethod

from chat.backends.base import Backend, BatchStats, Chunk, Finish
from chat.backends.local.grammars import STRUCTURED_FORMATS, llama_grammar
from chat.backends.local.jobs import Job
from chat.backends.local.kv_budget import default_parallel, kv_bytes_per_token
from chat.backends.local.prompt_cache import DEFAULT_MAX_BYTES, PromptCache
from chat.backends.local.queue import POLL_OUTSIDE, Cancelled, TurnQueue
from chat.backends.local.sampling import REPEAT_PENALTY, Sampling
from chat.backends.local.scheduler import Scheduler
from chat.backends.local.tokens import PromptTokenizer
from chat.errors import BackendTimeout, ConfigError, ContextOverflow
from chat.messages import GenerationParams, Message, Waiting

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 4096
# With several sequences the model handle only tokenizes and renders: the scheduler owns the
# context that decodes, so the handle's own context is kept small.
HANDLE_N_CTX = 64
WAIT_POLL = 0.2  # seconds between a queued request's looks at its position
ADMIT_WAIT = 0.05  # seconds an async caller waits for a free slot before it is shown a position
STOP_WAIT = 10.0  # seconds a closed stream waits for the scheduler to free its slot (one step)
RENDER_MEMO = 8  # rendered prompts kept: fitting counts the prompt the stream then generates
MESSAGE_MEMO = 4096  # per-message token counts kept for fitting long conversations
_PROBE = {"role": "system", "content": "."}  # a fixed first message: isolates one message's tokens


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def batch_threads() -> int:
    """Model threads when batching and none are set: every core but one.

    The scheduler decodes while the readers' Python (HTTP, guards, the page) runs beside it, and
    llama.cpp's threads spin at every barrier: a thread per core would make each step wait for
    one the readers pushed off its core (2 cores: 10-20x slower replies, bench_parallel).
    """
    return max(1, (os.cpu_count() or 2) - 1)


class LlamaCppBackend(Backend):
    name = "local"
    accepts_time_left = True  # the engine passes what is left of the request's total time
    response_formats = STRUCTURED_FORMATS  # JSON mode and JSON schema, through llama.cpp grammars

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        prompt_cache_bytes: int = DEFAULT_MAX_BYTES,
        reproducible: bool = False,
        parallel: int | None = None,
    ) -> None:
        from llama_cpp import Llama

        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu_offload_supported() else 0
        if n_threads is None and parallel != 1:
            n_threads = batch_threads()
        try:
            self._llm = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx if parallel == 1 else HANDLE_N_CTX,
                n_gpu_layers=n_gpu_layers,
                n_threads=n_threads,
                # the prompt too: llama.cpp would otherwise take every core for it
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ConfigError(
                f"cannot load {model_path.name}: {exc}. The file may be corrupt or truncated; "
                "if memory is short, lower --n-ctx or --n-gpu-layers"
            ) from None
        per_token = kv_bytes_per_token(self._llm)
        if parallel is None:
            parallel = default_parallel(per_token, n_ctx)
        if parallel > 1:
            cells = n_ctx * parallel
            log.info(
                "the local model batches %d conversations: %d KV cells, %d MiB",
                parallel,
                cells,
                cells * per_token >> 20,
            )
        self.model = model_path.name.removesuffix(".gguf")
        self.model_path = model_path
        self.n_gpu_layers = n_gpu_layers
        self.reproducible = reproducible
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.prompt_cache = PromptCache(self._llm, max_bytes=prompt_cache_bytes)
        self._queue = TurnQueue()
        self.scheduler: Scheduler | None = None
        if parallel > 1:
            self.scheduler = Scheduler(
                self._llm,
                n_ctx=n_ctx,
                parallel=parallel,
                prompt_cache=self.prompt_cache,
            )
        self._formatter = _template_formatter(self._llm)
        self._tokenizer = PromptTokenizer(self._llm, self._formatter)
        self._rendered: LRUCache[tuple[Message, ...], _Prompt] = LRUCache(maxsize=RENDER_MEMO)
        self._message_tokens: LRUCache[Message, int] = LRUCache(maxsize=MESSAGE_MEMO)
        self._memo_lock = threading.Lock()
        self._probe_tokens: int | None = None

    # -- Backend ------------------------------------------------------------------------------

    def context_window(self) -> int:
        return self.n_ctx

    @property
    def queue_depth(self) -> int:
        return self._queue.depth if self.scheduler is None else self.scheduler.depth

    def batch_stats(self) -> BatchStats | None:
        scheduler = self.scheduler
        if scheduler is None:
            return None
        return BatchStats(
            self.parallel, scheduler.active, scheduler.waiting, scheduler.steps, scheduler.batch_tokens
        )

    def room_for_background(self) -> bool:
        if self.scheduler is None:
            return super().room_for_background()
        return self.scheduler.waiting == 0 and self.scheduler.active < self.parallel

    def user_waiting(self) -> bool:
        if self.scheduler is None:
            return super().user_waiting()
        return self.scheduler.waiting > 0

    @property
    def context(self) -> Any:
        """The llama.cpp context that decodes (llama.cpp's own counters live on it)."""
        return self._llm.ctx if self.scheduler is None else self.scheduler.ctx

    def reset(self) -> None:
        """Forget every evaluated token (the next prompt is evaluated from its start)."""
        if self.scheduler is None:
            self._llm.reset()
        else:
            self.scheduler.reset()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length: the model's own chat template, rendered and tokenized once."""
        return len(self._prompt(messages).tokens)

    @cachedmethod(lambda self: self._message_tokens, lock=lambda self: self._memo_lock)
    def message_tokens(self, message: Message) -> int:
        """Tokens one message adds to a prompt, counted once per distinct message."""
        if self._probe_tokens is None:
            self._probe_tokens = len(self._render([_PROBE]).tokens)
        return len(self._render([_PROBE, message.to_dict()]).tokens) - self._probe_tokens

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
        time_left: float | None = None,
    ) -> Iterator[Chunk]:
        deadline = None if time_left is None else time.monotonic() + time_left
        grammar = llama_grammar(params.response_format)  # before the queue: a bad schema costs no turn
        if self.scheduler is not None:
            yield from self._stream_batched(self._prompt(messages), params, grammar, cancel, deadline)
            return
        try:
            for waiting in self._queue.wait_turn(cancel):
                if deadline is not None and time.monotonic() >= deadline:
                    raise BackendTimeout(
                        "no turn on the local model before the total timeout", backend=self.name
                    )
                yield waiting
        except Cancelled:
            yield Finish("cancelled")
            return
        try:
            yield from self._generate(self._prompt(messages), params, grammar, cancel, deadline)
        finally:
            self._queue.release()

    def readiness(self) -> str | None:
        return "model closed" if self._llm is None else None

    def close(self) -> None:
        scheduler, self.scheduler = getattr(self, "scheduler", None), None
        if scheduler is not None:
            scheduler.close()
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()

    # -- one generation among others, in a slot of the scheduler ---------------------------------

    def _stream_batched(
        self,
        prompt: _Prompt,
        params: GenerationParams,
        grammar: object,
        cancel: threading.Event | None,
        deadline: float | None,
    ) -> Iterator[Chunk]:
        self._check_fits(prompt.tokens)
        job = Job(
            tokens=prompt.tokens,
            sampling=Sampling(params.temperature, params.top_p, params.seed, grammar),
            max_tokens=params.max_new_tokens,
            stop=prompt.stop,
            deadline=deadline,
            # Opt-in: greedy replies identical run to run. Other sequences in the batch change
            # the arithmetic's grouping, which can change an argmax: such a reply runs alone.
            exclusive=self.reproducible and params.temperature == 0,
        )
        scheduler = self.scheduler
        scheduler.submit(job)
        ended = False
        try:
            while not job.admitted.is_set():
                if cancel is not None and cancel.is_set():
                    break  # the scheduler drops it from the queue and answers "cancelled"
                if deadline is not None and time.monotonic() >= deadline:
                    raise BackendTimeout(
                        "no turn on the local model before the total timeout", backend=self.name
                    )
                # a free slot takes it within a step: worth a short wait even for an async caller
                wait = WAIT_POLL if not POLL_OUTSIDE.get() else ADMIT_WAIT if scheduler.has_room() else 0
                if job.admitted.wait(wait):
                    break
                position = scheduler.position(job)
                if position:
                    yield Waiting(position)
            while True:
                if cancel is not None and cancel.is_set():
                    job.cancel.set()  # the scheduler ends it within a step, with a Finish
                job.reading.set()
                try:
                    item = job.out.get(timeout=WAIT_POLL)
                except queue.Empty:
                    continue
                finally:
                    job.reading.clear()
                ended = isinstance(item, (BaseException, Finish))
                if isinstance(item, BaseException):
                    raise item
                yield item
                if ended:
                    return
        finally:
            if not ended:  # Stop, a closed tab: the slot is free when the stream is closed
                job.cancel.set()
                scheduler.wake()
                _drain(job, STOP_WAIT)

    def _check_fits(self, tokens: list[int]) -> None:
        if len(tokens) >= self.n_ctx:
            raise ContextOverflow(
                f"prompt needs {len(tokens)} tokens, the window is {self.n_ctx}",
                needed=len(tokens),
                available=self.n_ctx,
                reserved=0,
            )

    # -- one generation, holding the model's turn -----------------------------------------------

    def _generate(
        self,
        prompt: _Prompt,
        params: GenerationParams,
        grammar: object,
        cancel: threading.Event | None,
        deadline: float | None,
    ) -> Iterator[Chunk]:
        tokens = prompt.tokens
        self._check_fits(tokens)
        if self.reproducible and params.temperature == 0:
            # Opt-in: greedy replies identical to a fresh start. A reused prefix evaluates in
            # different batches, which can change an argmax (see README, "Prompt cache").
            self._llm.reset()
            cached = 0
        else:
            cached = self.prompt_cache.prepare(tokens).cached_tokens
        pieces: list[str] = []
        reason = "stop"
        completion = self._llm.create_completion(
            tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop=prompt.stop,
            stopping_criteria=prompt.stopping_criteria,
            repeat_penalty=REPEAT_PENALTY,
            grammar=grammar,
            stream=True,
        )
        try:
            for chunk in completion:
                choice = chunk["choices"][0]
                text = choice.get("text")
                if text:
                    pieces.append(text)
                    yield text
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
                if cancel is not None and cancel.is_set():
                    reason = "cancelled"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    reason = "timeout"
                    break
        finally:
            completion.close()
        yield Finish(
            reason,
            prompt_tokens=len(tokens),
            completion_tokens=len(self.tokenize("".join(pieces))),
            cached_prompt_tokens=cached,
        )

    # -- prompts -----------------------------------------------------------------------------

    @cachedmethod(
        lambda self: self._rendered,
        key=lambda self, messages: tuple(messages),
        lock=lambda self: self._memo_lock,
    )
    def _prompt(self, messages: Sequence[Message]) -> _Prompt:
        """The rendered, tokenized prompt, shared by fitting (``count_tokens``) and ``stream``."""
        return self._render([m.to_dict() for m in messages])

    def _render(self, dicts: list[dict[str, str]]) -> _Prompt:
        rendered = self._formatter(messages=dicts)
        tokens = self._tokenizer.tokenize(rendered.prompt, add_bos=not rendered.added_special)
        stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return _Prompt(tokens, stop, rendered.stopping_criteria)


def _drain(job: Job, timeout: float) -> None:
    """Wait for the scheduler's last word on a cancelled job (its slot is then free)."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        try:
            item = job.out.get(timeout=left)
        except queue.Empty:
            return
        if isinstance(item, (BaseException, Finish)):
            return


class _Prompt:
    """A prompt ready to generate from: its tokens, and where the template says a reply ends."""

    __slots__ = ("tokens", "stop", "stopping_criteria")

    def __init__(self, tokens: list[int], stop: list[str], stopping_criteria: object) -> None:
        self.tokens = tokens
        self.stop = stop
        self.stopping_criteria = stopping_criteria


def _template_formatter(llm):  # noqa: ANN001, ANN202 - llama_cpp types are private
    """A formatter for the GGUF's own chat template, so token counts match what is generated.

    A GGUF without a template gets ChatML, the format most instruction-tuned models use.
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter, format_chatml

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return format_chatml
    vocab = llm._model  # noqa: SLF001 - the only way to read the special tokens' text
    eos = llm.token_eos()
    bos = llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=vocab.token_get_text(eos) if eos != -1 else "",
        bos_token=vocab.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
