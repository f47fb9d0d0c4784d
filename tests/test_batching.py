"""Several users at once on the local model: one batch per step, each sequence its own reply.

The real SmolLM2 model through the scheduler (chat.backends.local.scheduler), no mock. Timings
are never asserted; the tests assert what a user sees (their own reply, a Stop that frees a
slot at once, a clear error) and what the scheduler did (sequences decoded together).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import llama_cpp
import numpy as np
import pytest

from chat import ChatEngine, GenerationParams, Message
from chat.backends.base import Finish
from chat.backends.local.backend import LlamaCppBackend
from chat.backends.local.grammars import parse_response_format
from chat.backends.local.kv_budget import default_parallel, kv_bytes_per_token
from chat.backends.local.sampling import (
    PENALTY_LAST_N,
    REPEAT_PENALTY,
    Outputs,
    SamplerChain,
    Sampling,
    Vocabulary,
)
from chat.backends.local.scheduler import N_BATCH, PREFILL_CHUNK, prefill_budget
from chat.errors import ChatError, ContextOverflow
from chat.messages import Waiting
from chat.service.door.access import Admission

CODE_WORDS = ["amber", "cobalt", "juniper", "saffron", "violet", "walnut"]
ESSAYS = ["Rome", "Egypt", "China", "Greece", "the Inca", "Japan", "Persia", "the Maya", "Mali"]
LONG_TASK = "Write a long, detailed essay about the history of {}."  # greedy: hundreds of tokens


@pytest.fixture
def backend(local_backend: LlamaCppBackend) -> Iterator[LlamaCppBackend]:
    """The shared model, batching: the session's reproducible mode runs greedy replies alone."""
    assert local_backend.scheduler is not None and local_backend.parallel >= 4
    saved = local_backend.reproducible
    local_backend.reproducible = False
    yield local_backend
    local_backend.reproducible = saved
    wait_idle(local_backend)


def wait_idle(backend: LlamaCppBackend, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while backend.queue_depth and time.monotonic() < end:
        time.sleep(0.02)
    assert backend.queue_depth == 0


def only_word(word: str) -> str:
    """A response_format whose only valid output is ``{"code": "<word>"}``."""
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "enum": [word]}},
        "required": ["code"],
        "additionalProperties": False,
    }
    return parse_response_format({"type": "json_schema", "json_schema": {"name": "code", "schema": schema}})


def ask(text: str) -> list[Message]:
    return [Message("system", "You are a helpful assistant."), Message("user", text)]


class Stream:
    """One request on its own thread, recording what it received and when."""

    def __init__(self, backend: LlamaCppBackend, messages: list[Message], params: GenerationParams) -> None:
        self.chunks = backend.stream(messages, params)
        self.text: list[str] = []
        self.waited = False
        self.finish: Finish | None = None
        self.error: BaseException | None = None
        self.first_text = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for chunk in self.chunks:
                if isinstance(chunk, Waiting):
                    self.waited = True
                elif isinstance(chunk, Finish):
                    self.finish = chunk
                elif isinstance(chunk, str):
                    self.text.append(chunk)
                    self.first_text.set()
                if self.stop.is_set():
                    break
        except ChatError as exc:
            self.error = exc
        finally:
            self.chunks.close()
            self.first_text.set()

    def join(self, timeout: float = 120.0) -> Stream:
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return self


def test_each_stream_gets_its_own_reply(backend: LlamaCppBackend) -> None:
    """More streams than slots at once, each held by a grammar to its own code word: a token
    delivered to the wrong sequence would break its JSON or its word."""
    before = backend.batch_stats()
    streams = [
        Stream(
            backend,
            ask(f"Reply with the code word {w}."),
            GenerationParams(temperature=0.9, response_format=only_word(w)),
        )
        for w in CODE_WORDS
    ]
    most_active = 0
    while any(s.thread.is_alive() for s in streams):
        most_active = max(most_active, backend.batch_stats().active)
        time.sleep(0.002)
    for word, stream in zip(CODE_WORDS, streams, strict=True):
        stream.join()
        assert stream.error is None
        assert json.loads("".join(stream.text)) == {"code": word}
        assert stream.finish is not None and stream.finish.reason == "stop"
    after = backend.batch_stats()
    assert most_active >= 2  # sequences held slots together...
    assert after.step_tokens - before.step_tokens > after.steps - before.steps  # ...and shared steps


def test_stop_frees_the_slot_for_a_waiting_request(backend: LlamaCppBackend) -> None:
    long = GenerationParams(temperature=0.0, max_new_tokens=200)
    running = [
        Stream(backend, [Message("user", LONG_TASK.format(e))], long) for e in ESSAYS[: backend.parallel]
    ]
    for stream in running:
        assert stream.first_text.wait(60)
    waiting = Stream(backend, ask("Name a colour."), GenerationParams(temperature=0.0, max_new_tokens=8))
    deadline = time.monotonic() + 10
    while not waiting.waited and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiting.waited and not waiting.text  # every slot is taken: it waits its turn
    engine = ChatEngine({"local": backend})
    assert Admission(engine, max_queue=1).full()  # --max-queue counts those waiting for a slot
    assert not Admission(engine, max_queue=2).full()
    running[0].stop.set()  # Stop: the stream is closed mid-reply
    running[0].join()
    assert waiting.join(60).finish is not None  # the freed slot served it...
    assert all(s.thread.is_alive() for s in running[1:])  # ...while the others still ran
    for stream in running[1:]:
        stream.join()
        assert stream.error is None and stream.finish.reason == "length"
        assert stream.finish.completion_tokens == 200


def test_mixed_parameters_in_one_batch_keep_their_own_behaviour(backend: LlamaCppBackend) -> None:
    question = ask("What is the capital of France? Answer in one sentence.")
    greedy = GenerationParams(temperature=0.0, max_new_tokens=24)
    backend.reset()
    alone = Stream(backend, question, greedy).join()
    others = [
        Stream(
            backend,
            ask("Write a wild poem about the moon."),
            GenerationParams(temperature=1.2, top_p=0.5, max_new_tokens=48),
        ),
        Stream(
            backend,
            ask("Give me JSON about a cat."),
            GenerationParams(temperature=1.0, response_format=only_word("cat")),
        ),
    ]
    backend.reset()
    batched = Stream(backend, question, greedy).join()
    for stream in others:
        stream.join()
    assert json.loads("".join(others[1].text)) == {"code": "cat"}  # the grammar stayed its own
    assert not "".join(others[0].text).lstrip().startswith("{")  # and did not leak to the poem
    # Greedy stays greedy among sampled neighbours; the first words cannot depend on them.
    assert "".join(batched.text)[:20] == "".join(alone.text)[:20]


def test_a_lone_greedy_reply_matches_one_at_a_time(local_backend: LlamaCppBackend, data_dir: str) -> None:
    """The scheduler samples as llama-cpp-python's own path does (--parallel 1)."""
    serial = LlamaCppBackend(local_backend.model_path, n_ctx=local_backend.n_ctx, n_threads=1, parallel=1)
    try:
        question = ask("Name three animals that live in the sea.")
        params = GenerationParams(temperature=0.0, max_new_tokens=24)
        local_backend.reset()
        assert "".join(Stream(local_backend, question, params).join().text) == "".join(
            Stream(serial, question, params).join().text
        )
    finally:
        serial.close()


def test_bad_requests_fail_alone(backend: LlamaCppBackend) -> None:
    long = GenerationParams(temperature=0.0, max_new_tokens=120)
    good = [Stream(backend, [Message("user", LONG_TASK.format(e))], long) for e in ESSAYS[:2]]
    for stream in good:
        assert stream.first_text.wait(60)
    with pytest.raises(ContextOverflow):
        list(backend.stream(ask("word " * 3000), long))
    with pytest.raises(ChatError):
        list(
            backend.stream(
                ask("Hi"),
                GenerationParams(
                    response_format='{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}'
                ),
            )
        )
    for stream in good:
        stream.join()
        assert stream.error is None and stream.finish.completion_tokens == 120


def test_http_users_are_served_together(app_url: str, local_backend: LlamaCppBackend) -> None:
    """Four users through /api/chat at once: every first token comes before any reply ends (one
    at a time, the fourth would see its first token after three whole replies), and a client that
    hangs up frees its slot."""
    app_url = app_url.rstrip("/")
    marks: dict[int, list[float]] = {}

    def user(i: int) -> None:
        context = {"temperature": 0.8, "max_new_tokens": 96}
        body = {"user_input": LONG_TASK.format(ESSAYS[i]), "stream": True, "context": context}
        with httpx.stream("POST", f"{app_url}/api/chat", json=body, timeout=120) as response:
            assert response.status_code == 200
            first = None
            for line in response.iter_lines():
                if first is None and line.startswith("event: delta"):
                    first = time.monotonic()
            marks[i] = [first, time.monotonic()]

    threads = [threading.Thread(target=user, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(marks) == 4 and all(first is not None for first, _ in marks.values())
    assert max(first for first, _ in marks.values()) < min(end for _, end in marks.values())

    body = {
        "user_input": LONG_TASK.format("Mali"),
        "stream": True,
        "context": {"temperature": 0.0, "max_new_tokens": 500},
    }
    with httpx.stream("POST", f"{app_url}/api/chat", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                break  # the user closes the tab mid-reply
    wait_idle(local_backend)


def test_metrics_show_the_batch(app_url: str) -> None:
    app_url = app_url.rstrip("/")
    text = httpx.get(f"{app_url}/metrics", timeout=10).text
    for name in (
        "chat_batch_slots",
        "chat_batch_active_sequences",
        "chat_batch_waiting",
        "chat_batch_steps_total",
    ):
        assert f'{name}{{backend="local"}}' in text


def test_closing_the_model_ends_every_stream(local_backend: LlamaCppBackend) -> None:
    """Running streams get a clear error and waiting ones a cancelled finish: none hangs."""
    model = LlamaCppBackend(local_backend.model_path, n_ctx=2048, n_threads=1, parallel=2)
    streams = [Stream(model, ask(LONG_TASK.format(e)), GenerationParams(temperature=0.0)) for e in ESSAYS[:3]]
    deadline = time.monotonic() + 60
    while sum(bool(s.text) for s in streams) < 2:  # two replying (whichever came first), one waiting
        assert time.monotonic() < deadline
        time.sleep(0.01)
    model.close()
    for stream in streams:
        stream.join(30)
    running = [s for s in streams if s.text]
    waiting = [s for s in streams if not s.text]
    assert [type(s.error).__name__ for s in running] == ["Unavailable", "Unavailable"]
    assert len(waiting) == 1 and waiting[0].finish is not None and waiting[0].finish.reason == "cancelled"


def test_pieces_longer_than_the_buffer_are_kept(local_backend: LlamaCppBackend) -> None:
    """SmolLM2 has tokens of 64+ bytes (a rule of 76 '#'): each reaches the text whole."""
    from chat.backends.local.sampling import TextOut

    vocab = local_backend._llm._model.vocab
    out = TextOut(Vocabulary(vocab), stop=[])
    longest = max(
        range(llama_cpp.llama_vocab_n_tokens(vocab)),
        key=lambda t: len(llama_cpp.llama_vocab_get_text(vocab, t)),
    )
    text, _ = out.push(longest)
    assert len(text.encode()) > 64


def test_each_prompt_being_evaluated_gets_its_own_chunk_within_one_batch() -> None:
    assert prefill_budget(0, 1) == N_BATCH  # alone: a whole batch
    assert prefill_budget(3, 1) == PREFILL_CHUNK  # a long prompt stalls the others by one chunk
    assert prefill_budget(1, 3) == 3 * PREFILL_CHUNK  # users who arrived together start together
    assert prefill_budget(7, 8) == N_BATCH - 7  # never more than the batch holds


def test_the_default_slots_follow_what_eight_windows_of_kv_cells_take(backend: LlamaCppBackend) -> None:
    """Unset --parallel gives eight slots when eight full windows' cells fit in 1 GiB, else four;
    the bytes per token are checked against the size llama.cpp gives a sequence's saved state."""
    assert Stream(backend, ask("Name a colour."), GenerationParams(max_new_tokens=8)).join(60).finish
    wait_idle(backend)
    memory = llama_cpp.llama_get_memory(backend.context)
    held = max(range(backend.parallel), key=lambda s: llama_cpp.llama_memory_seq_pos_max(memory, s))
    tokens = llama_cpp.llama_memory_seq_pos_max(memory, held) + 1
    assert tokens > 16
    per_token = kv_bytes_per_token(backend._llm)  # noqa: SLF001 - the handle the backend loaded
    state = llama_cpp.llama_state_seq_get_size(backend.context, held)
    assert abs(state - tokens * per_token) < 0.02 * tokens * per_token

    assert backend.parallel == default_parallel(per_token, backend.n_ctx) == 8  # built without --parallel
    assert default_parallel(per_token, 4096) == 8  # SmolLM2 at the default window: 720 MiB
    assert default_parallel(per_token, 8192) == 4
    assert (
        default_parallel(32 * 32 * 256 * 2, 4096) == 4
    )  # a 7B model without grouped KV heads (eight windows: 16 GiB)


def test_greedy_picks_what_llama_cpps_penalty_and_greedy_chain_picks(local_backend: LlamaCppBackend) -> None:
    """The in-place greedy path against llama.cpp's own sampler chain on the same logits, token by
    token, through a reply long and repetitive enough for the repeat penalty to decide picks."""
    llm = local_backend._llm  # noqa: SLF001 - the handle the backend loaded
    vocab = Vocabulary(llm._model.vocab)  # noqa: SLF001
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_threads, params.n_threads_batch = 512, 1, 1
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)  # noqa: SLF001
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    greedy = SamplerChain(vocab, Sampling(temperature=0.0, top_p=1.0))
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    penalties = llama_cpp.llama_sampler_init_penalties(vocab.size, PENALTY_LAST_N, REPEAT_PENALTY, 0.0, 0.0)
    llama_cpp.llama_sampler_chain_add(chain, penalties)
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    try:
        tokens = llm.tokenize(b"List the word cat forty times: cat cat cat cat cat cat cat cat", add_bos=True)
        differed_from_argmax = 0
        for step in range(160):
            new = tokens if step == 0 else tokens[-1:]
            batch.n_tokens = len(new)
            for i, token in enumerate(new):
                batch.token[i], batch.pos[i] = token, len(tokens) - len(new) + i
                batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = 1, 0, i == len(new) - 1
            assert llama_cpp.llama_decode(ctx, batch) == 0
            outputs = Outputs(ctx, [len(new) - 1], vocab.size)
            picked = greedy.sample(outputs, len(new) - 1)
            assert picked == llama_cpp.llama_sampler_sample(chain, ctx, len(new) - 1), step
            differed_from_argmax += picked != int(np.argmax(outputs.row(len(new) - 1)))
            tokens.append(picked)
        assert differed_from_argmax > 0  # the penalty changed some picks: it was exercised
    finally:
        greedy.free()
        llama_cpp.llama_sampler_free(chain)
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
