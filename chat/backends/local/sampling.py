"""One sampler chain per sequence, and the text its tokens spell.

Every request in a batch samples from its own logits with its own chain, so temperature, top-p,
the repeat penalty, the seed and a ``response_format`` grammar never leak between users. The chain
is the one llama-cpp-python's ``Llama`` builds for ``create_completion``, so a request samples the
same way whichever path serves it.
"""

from __future__ import annotations

import codecs
import ctypes
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np

from chat.errors import InvalidRequest

# A mild repeat penalty (Ollama's default): small models loop without it.
REPEAT_PENALTY = 1.1
PENALTY_LAST_N = 64  # llama-cpp-python's ``last_n_tokens_size``
TOP_K = 40
MIN_P = 0.05


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens."""

    temperature: float
    top_p: float
    seed: int | None = None
    grammar: Any = None  # a llama_cpp.LlamaGrammar, or None
    repeat_penalty: float = REPEAT_PENALTY


class Vocabulary:
    """The model's vocabulary as the sampling loop reads it: which tokens end a reply and each
    token's bytes, asked of llama.cpp once. Every ctypes call lets the GIL go, and between a step's
    picks the HTTP threads would then keep the scheduler waiting (0.8 of 1.5 ms a step at eight
    users)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.size = llama_cpp.llama_vocab_n_tokens(handle)
        self.ends = frozenset(t for t in range(self.size) if llama_cpp.llama_vocab_is_eog(handle, t))
        self._pieces: dict[int, bytes] = {}
        self._buffer = (ctypes.c_char * 64)()

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buffer = self._buffer
            n = llama_cpp.llama_token_to_piece(self.handle, token, buffer, len(buffer), 0, False)
            if n < 0:  # a piece longer than the buffer (a rule of 76 '#', deep indentation): -n bytes
                buffer = (ctypes.c_char * -n)()
                n = llama_cpp.llama_token_to_piece(self.handle, token, buffer, len(buffer), 0, False)
            piece = self._pieces[token] = bytes(buffer[: max(n, 0)])
        return piece


class Outputs:
    """A step's logits: one row for each batch index that asked for them, in batch order, read
    from llama.cpp in one call."""

    def __init__(self, ctx: Any, indices: list[int], n_vocab: int) -> None:
        self.ctx = ctx
        self._row = {index: row for row, index in enumerate(sorted(indices))}
        shape = (len(indices), n_vocab)
        self._logits = (
            np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=shape) if indices else None
        )

    def row(self, index: int) -> np.ndarray:
        return self._logits[self._row[index]]


class SamplerChain:
    """A llama.cpp sampler chain for one sequence; ``sample`` picks and accepts a token.

    Greedy without a grammar skips the chain and picks the same token from the logits in place:
    llama.cpp's repeat penalty looks up every one of the vocabulary's tokens in its window (230 us
    a token for SmolLM2's 49,152, 2.4 ms of a 34 ms step at eight users), where the window's 64
    tokens are all it changes.
    """

    def __init__(self, vocab: Vocabulary, sampling: Sampling) -> None:
        self._chain = None
        self._greedy: _Greedy | None = None
        if sampling.temperature == 0 and sampling.grammar is None:
            self._greedy = _Greedy(sampling.repeat_penalty)
            return
        params = llama_cpp.llama_sampler_chain_default_params()
        self._chain = llama_cpp.llama_sampler_chain_init(params)
        try:
            self._build(vocab.handle, sampling)
        except BaseException:
            self.free()
            raise

    def _build(self, vocab: Any, sampling: Sampling) -> None:
        add = self._add
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        add(
            llama_cpp.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0)
        )
        grammar = sampling.grammar
        if grammar is not None:
            constrained = llama_cpp.llama_sampler_init_grammar(
                vocab,
                grammar._grammar.encode("utf-8"),  # noqa: SLF001 - LlamaGrammar's GBNF text
                grammar._root.encode("utf-8"),  # noqa: SLF001
            )
            if not constrained:  # llama.cpp refused it: unconstrained text would be a silent lie
                raise InvalidRequest("llama.cpp could not use the grammar of this response_format")
            add(constrained)
        if sampling.temperature == 0:
            add(llama_cpp.llama_sampler_init_greedy())
            return
        seed = sampling.seed if sampling.seed is not None else random.randrange(2**32)
        add(llama_cpp.llama_sampler_init_top_k(TOP_K))
        add(llama_cpp.llama_sampler_init_typical(1.0, 1))
        add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
        add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        add(llama_cpp.llama_sampler_init_dist(seed))

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def sample(self, outputs: Outputs, batch_index: int) -> int:
        if self._greedy is not None:
            return self._greedy.pick(outputs.row(batch_index))
        return llama_cpp.llama_sampler_sample(self._chain, outputs.ctx, batch_index)

    def free(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


class _Greedy:
    """llama.cpp's penalties-then-greedy chain on the logits in place: a token seen among the last
    ``PENALTY_LAST_N`` picks has its logit divided by the penalty (multiplied when not positive),
    in float32 as llama.cpp does, and the first highest logit wins."""

    def __init__(self, penalty: float) -> None:
        self._penalty = np.float32(penalty)
        self._recent: deque[int] = deque(maxlen=PENALTY_LAST_N)

    def pick(self, logits: np.ndarray) -> int:
        if self._recent and self._penalty != 1:
            seen = np.fromiter(set(self._recent), dtype=np.intp)
            logits = logits.copy()
            values = logits[seen]
            logits[seen] = np.where(values <= 0, values * self._penalty, values / self._penalty)
        token = int(np.argmax(logits))
        self._recent.append(token)
        return token


class TextOut:
    """Sampled tokens to text: UTF-8 split across tokens, and the template's stop strings.

    Text that could be the start of a stop string is held back until the next token settles it,
    so a stop string never reaches the user, not even in part.
    """

    def __init__(self, vocab: Vocabulary, stop: list[str]) -> None:
        self._vocab = vocab
        self._stop = [s for s in stop if s]
        # bytes a reply cut mid-character leaves are dropped, as llama-cpp-python does
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._held = ""

    def push(self, token: int) -> tuple[str, bool]:
        """The text now safe to show, and whether a stop string ended the reply."""
        text = self._held + self._decoder.decode(self._vocab.piece(token))
        for stop in self._stop:
            at = text.find(stop)
            if at != -1:
                self._held = ""
                return text[:at], True
        keep = _held_back(text, self._stop)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        text, self._held = self._held + self._decoder.decode(b"", final=True), ""
        return text


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
