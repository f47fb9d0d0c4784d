"""A request on the batching model and the slot (sequence) that serves it.

The scheduler (``scheduler.py``) fills a job's ``out`` from its own thread; the request's thread
reads it. A slot remembers which tokens its KV cells hold, so a conversation coming back can
reuse them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from chat.backends.local.sampling import SamplerChain, Sampling, TextOut


@dataclass(eq=False)
class Job:
    """One request: its prompt and how to sample it; the scheduler fills ``out`` as it runs."""

    tokens: list[int]
    sampling: Sampling
    max_tokens: int  # GenerationParams.max_new_tokens: at least 1
    stop: list[str]
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    exclusive: bool = False  # runs alone from an empty sequence (reproducible greedy replies)
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # str pieces, then a Finish
    admitted: threading.Event = field(default_factory=threading.Event)
    reading: threading.Event = field(default_factory=threading.Event)  # set: the reader waits on ``out``


class Slot:
    """One sequence id of the context and what its KV cells hold."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.tokens = np.zeros(0, dtype=np.intc)  # the tokens in its KV cells, positions 0..n-1
        self.job: Job | None = None
        self.pending: list[int] = []  # prompt tokens still to evaluate
        self.chain: SamplerChain | None = None
        self.text: TextOut | None = None
        self.last = -1  # the sampled token the next step evaluates
        self.generated = 0
        self.cached = 0
        self.index = -1  # where this slot's logits are in the current batch
        self.used_at = 0.0

    def evaluated(self, tokens: Sequence[int]) -> None:
        self.tokens = np.concatenate([self.tokens, np.asarray(tokens, dtype=np.intc)])


def ended(job: Job) -> str | None:
    """Why a running job must end now (Stop, a closed stream, its deadline), else None."""
    if job.cancel.is_set():
        return "cancelled"
    if job.deadline is not None and time.monotonic() >= job.deadline:
        return "timeout"
    return None
