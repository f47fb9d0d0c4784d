"""Time to first token by turn, for several users sharing one model in long conversations.

1, 2 and 4 conversations take turns (each message goes to the next conversation), at temperature
0.7 and 0, through the app's engine (guards on, response cache on: no prompt repeats) and through
``python app.py`` over HTTP (``POST /api/chat`` with SSE, the history sent each time), beside raw
llama-cpp-python on one conversation with its own prefix reuse: the best one conversation can do.
Then the engine and raw llama-cpp-python in step, turn by turn, with the time each spends outside
llama.cpp's own evaluation (its perf counters), which the machine's noise does not blur; decode
speed measured the same two ways; the work per request at turn 50 (fitting and input guards,
without the model); prompt-cache memory and process RSS. Prints Markdown tables.

Every conversation of every row has its own messages (the row's number is in each one). With
the same messages in every row, a row's first conversations replayed the previous row's replies
from the response cache (a greedy reply ends with "stop" and is cached): the "2 conversations"
row at temperature 0 was one conversation plus replays, never restored a state, and averaged in
near-zero times. A message has the same length in tokens at every turn (turn 20 no longer pays
for longer numbers than turn 1: 3 tokens of about 36). A row starts with the system prompt
cached by the rows before it, as a running server has it (every conversation shares the app's
system prompt), so turn 1 evaluates only its message and the assistant header, while a later
turn also evaluates the end of the previous reply and the user header before its message (5
tokens with ChatML). The second table gives those counts (mean prompt tokens evaluated per
reply), which timing noise cannot blur: a later turn evaluates only its new tokens. "Position
cost" is the rest of the story: the same new tokens take longer late in a conversation, because
attention reads every earlier token; no cache removes that.

    python bench/bench_turns.py [--turns 20] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from app_process import launched_app, sse_turn  # noqa: E402
from support import free_port  # noqa: E402

from chat import GenerationParams, Message, Settings, TextDelta  # noqa: E402
from chat.backends.local.backend import REPEAT_PENALTY  # noqa: E402
from chat.engine.window import fit_messages  # noqa: E402
from chat.factory import build_engine  # noqa: E402

N_CTX = 4096
SYSTEM = "You are a helpful assistant. Answer briefly."
REPORTED_TURNS = (1, 5, 10, 20)
FAR = 1800  # a position late in a 20-turn conversation (about 1,700-1,900 tokens)
_rows = itertools.count(1)  # each row's conversations get their own messages (see above)


@dataclass
class Turn:
    """One reply timed from outside: seconds to the first text, the text, the prompt tokens it
    evaluated and llama.cpp's own milliseconds of prompt evaluation (its perf counters); then its
    decoding: seconds from the first text to the last (saving the prompt cache comes after), the
    tokens llama.cpp decoded and its own milliseconds for them."""

    ttft: float
    text: str
    evaluated: float
    prompt_eval_ms: float
    decode_s: float = float("nan")
    decoded: int = 0
    decode_ms: float = float("nan")

    @property
    def outside_ms(self) -> float:
        """Time to first token that is not llama.cpp evaluating the prompt: what a path adds
        around the model, without the model's own (noisy) compute."""
        return self.ttft * 1000 - self.prompt_eval_ms

    @property
    def rate(self) -> float:
        """Decode tokens/s."""
        return self.decoded / self.decode_s

    @property
    def decode_outside_ms(self) -> float:
        """Per decoded token, the time not spent in llama.cpp's decode: sampling, detokenizing,
        and everything a path adds (the engine's guards, parsers and generators)."""
        return (self.decode_s * 1000 - self.decode_ms) / self.decoded


# (history, temperature) -> the reply, timed
Reply = Callable[[list[dict[str, str]], float], Turn]


def question(conversation: int, turn: int, row: int = 0) -> str:
    """The same number of tokens at every turn (two-digit turn, three-digit number)."""
    number = 100 + turn * 7 + conversation
    return f"Conversation {conversation} of run {row}, message {turn:02d}: tell me one fact about the number {number}."


def run_lanes(
    reply: Reply, lanes: int, turns: int, temperature: float
) -> tuple[dict[int, float], dict[int, float]]:
    """Mean time to first token (ms) and mean prompt tokens evaluated, per turn, over ``lanes``
    interleaved conversations with messages no other row uses."""
    row = next(_rows)
    histories = [[{"role": "system", "content": SYSTEM}] for _ in range(lanes)]
    times: dict[int, list[float]] = {}
    evaluated: dict[int, list[float]] = {}
    for turn in range(1, turns + 1):
        for lane, history in enumerate(histories):
            history.append({"role": "user", "content": question(lane, turn, row)})
            answer = reply(history, temperature)
            history.append({"role": "assistant", "content": answer.text})
            times.setdefault(turn, []).append(answer.ttft * 1000)
            evaluated.setdefault(turn, []).append(answer.evaluated)
    return (
        {turn: statistics.mean(values) for turn, values in times.items()},
        {turn: statistics.mean(values) for turn, values in evaluated.items()},
    )


def _timed(ctx, call: Callable[[], Iterator[str]]) -> Turn:  # noqa: ANN001
    """Run ``call`` and step its texts to the end, llama.cpp's perf counters reset first. The
    clock starts before the call: llama-cpp-python renders and tokenizes the prompt in the call
    itself (several milliseconds late in a conversation), the engine in its first step."""
    import llama_cpp

    llama_cpp.llama_perf_context_reset(ctx)
    start = time.perf_counter()
    first = last = None
    pieces = []
    for text in call():
        if text:
            last = time.perf_counter()
            first = first or last
            pieces.append(text)
    perf = llama_cpp.llama_perf_context(ctx)
    return Turn(
        (first or start) - start,
        "".join(pieces),
        float(perf.n_p_eval),
        perf.t_p_eval_ms,
        (last or start) - (first or start),
        perf.n_eval,
        perf.t_eval_ms,
    )


def raw_turn(llm, history: list[dict[str, str]], temperature: float, max_tokens: int) -> Turn:  # noqa: ANN001
    """llama-cpp-python's own chat call, sampling as the engine does (its repeat penalty): its KV
    prefix reuse is all the caching it has."""

    def texts() -> Iterator[str]:
        chunks = llm.create_chat_completion(
            history,
            temperature=temperature,
            max_tokens=max_tokens,
            repeat_penalty=REPEAT_PENALTY,
            stream=True,
        )
        return (c["choices"][0]["delta"].get("content") for c in chunks)

    return _timed(llm.ctx, texts)


def engine_turn(engine, history: list[dict[str, str]], temperature: float, max_tokens: int) -> Turn:  # noqa: ANN001
    """From the call (input guards, fitting, prompt cache included) to the first text the user
    would see, timed from outside exactly as ``raw_turn`` is."""
    params = GenerationParams(temperature=temperature, max_new_tokens=max_tokens, context_length=N_CTX)

    def texts() -> Iterator[str]:
        return (e.text for e in engine.stream(history, params) if isinstance(e, TextDelta))

    backend = engine.backends["local"]
    # the scheduler's context when replies are batched (--parallel above 1), else the handle's
    ctx = backend.scheduler.ctx if backend.scheduler is not None else backend._llm.ctx  # noqa: SLF001
    return _timed(ctx, texts)


def http_reply(client: httpx.Client, max_tokens: int) -> Reply:
    def reply(history: list[dict[str, str]], temperature: float) -> Turn:
        *earlier, newest = history
        context = {
            "system_prompt": earlier[0]["content"],
            "history": earlier[1:],
            "temperature": temperature,
            "max_new_tokens": max_tokens,
            "context_length": N_CTX,
        }
        ttft, done = sse_turn(client, {"user_input": newest["content"], "context": context})
        evaluated = done.get("evaluated_prompt_tokens")
        return Turn(
            ttft, done.get("reply", ""), float("nan") if evaluated is None else evaluated, float("nan")
        )

    return reply


def warm(engine, llm) -> None:  # noqa: ANN001
    """Both paths start a conversation with the system prompt evaluated, as a running server has
    it (every conversation shares the app's system prompt)."""
    hello = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello!"}]
    engine.reply(hello, GenerationParams(max_new_tokens=1, context_length=N_CTX))
    for _ in llm.create_chat_completion(hello, max_tokens=1, stream=True):
        pass


def engine_against_raw(engine, llm, turns: int, max_tokens: int, repeats: int) -> list[str]:  # noqa: ANN001
    """The engine and raw llama-cpp-python in step, one conversation each, ``repeats`` times:
    at every turn both answer the same message, back to back (which goes first alternates), so
    the machine's slow and fast seconds fall on both alike. "Outside" is time to first token
    minus llama.cpp's own prompt-evaluation time (its perf counters): the cost a path adds around
    the model, free of the model's run-to-run noise and of the two conversations' lengths
    drifting apart (their sampled replies differ)."""
    lines = []
    every: dict[float, list[tuple[Turn, Turn]]] = {}
    for temperature in (0.7, 0.0):
        by_turn: dict[int, list[tuple[Turn, Turn]]] = {}
        for _ in range(repeats):
            row = next(_rows)
            warm(engine, llm)
            raw_history = [{"role": "system", "content": SYSTEM}]
            engine_history = [{"role": "system", "content": SYSTEM}]
            for turn in range(1, turns + 1):
                message = {"role": "user", "content": question(0, turn, row)}
                raw_history.append(message)
                engine_history.append(message)
                if turn % 2:
                    ours = engine_turn(engine, engine_history, temperature, max_tokens)
                    raw = raw_turn(llm, raw_history, temperature, max_tokens)
                else:
                    raw = raw_turn(llm, raw_history, temperature, max_tokens)
                    ours = engine_turn(engine, engine_history, temperature, max_tokens)
                raw_history.append({"role": "assistant", "content": raw.text})
                engine_history.append({"role": "assistant", "content": ours.text})
                by_turn.setdefault(turn, []).append((raw, ours))
        every[temperature] = [pair for pairs in by_turn.values() for pair in pairs]
        for turn in [t for t in REPORTED_TURNS if t <= turns]:
            lines.append(_pair_row(f"{temperature:g}, turn {turn}", by_turn[turn]))
    for temperature, pairs in every.items():
        lines.append(_pair_row(f"{temperature:g}, all {turns} turns", pairs))
    return lines


def _pair_row(label: str, pairs: list[tuple[Turn, Turn]]) -> str:
    """Medians over ``pairs`` of (raw, engine) turns: TTFT, their difference, and the same for
    the time outside llama.cpp's prompt evaluation."""

    def median(values: Iterator[float]) -> float:
        return statistics.median(list(values))

    raw = median(r.ttft * 1000 for r, _ in pairs)
    ours = median(e.ttft * 1000 for _, e in pairs)
    gap = median((e.ttft - r.ttft) * 1000 for r, e in pairs)
    raw_out = median(r.outside_ms for r, _ in pairs)
    ours_out = median(e.outside_ms for _, e in pairs)
    gap_out = median(e.outside_ms - r.outside_ms for r, e in pairs)
    return (
        f"| {label} | {len(pairs)} | {raw:.0f} | {ours:.0f} | {gap:+.0f} "
        f"| {raw_out:.1f} | {ours_out:.1f} | {gap_out:+.1f} |"
    )


def decode_speed(engine, llm, pairs: int = 6) -> tuple[list[Turn], list[Turn]]:  # noqa: ANN001
    """The engine's and raw llama-cpp-python's decoding of the same prompts (128 new tokens at
    0.7), back to back in alternating order: (engine runs, raw runs)."""
    paths = ((engine_turn, engine), (raw_turn, llm))
    runs: dict[Callable, list[Turn]] = {engine_turn: [], raw_turn: []}
    for i in range(pairs):
        history = [{"role": "user", "content": f"Write a long story about lighthouse number {i}."}]
        for path, model in paths if i % 2 else reversed(paths):
            runs[path].append(path(model, history, 0.7, 128))
    return runs[engine_turn], runs[raw_turn]


def decode_rows(ours: list[Turn], raw: list[Turn]) -> list[str]:
    """Tokens/s as measured (noisy: the machine's speed moves by several percent from one reply
    to the next), then the same ratio at equal llama.cpp speed, from the time each path spends
    outside llama.cpp per token (what the engine can add)."""
    rate_ours = statistics.median(d.rate for d in ours)
    rate_raw = statistics.median(d.rate for d in raw)
    paired = statistics.median(o.rate / r.rate for o, r in zip(ours, raw, strict=True))
    llama_ms = statistics.median(d.decode_ms / d.decoded for d in ours + raw)
    out_ours = statistics.median(d.decode_outside_ms for d in ours)
    out_raw = statistics.median(d.decode_outside_ms for d in raw)
    return [
        f"| decode tokens/s, engine / raw, medians of {len(ours)} (median paired ratio) "
        f"| {rate_ours:.1f} / {rate_raw:.1f} = {rate_ours / rate_raw:.3f} ({paired:.3f}) |",
        f"| decode ms per token outside llama.cpp, engine / raw (llama.cpp itself: {llama_ms:.1f}) "
        f"| {out_ours:.2f} / {out_raw:.2f} |",
        f"| decode speed ratio at equal llama.cpp speed | {(llama_ms + out_raw) / (llama_ms + out_ours):.3f} |",
    ]


def position_cost(llm, new_tokens: int = 34) -> tuple[float, float]:  # noqa: ANN001
    """Milliseconds (min of 10) to evaluate the same ``new_tokens`` after 20 tokens and after
    ``FAR``: what a later turn costs more with a perfect cache, since attention reads every
    earlier token."""
    text = " ".join(question(0, turn) for turn in range(1, 200))
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)
    prefix, new = tokens[:FAR], tokens[FAR : FAR + new_tokens]
    llm.reset()
    llm.eval(prefix)
    cost = {}
    for at in (FAR, 20):  # the far position first: truncating keeps the prefix it needs
        samples = []
        for _ in range(10):
            llm._ctx.kv_cache_seq_rm(-1, at, -1)  # noqa: SLF001 - drop what the last sample added
            llm.n_tokens = at
            start = time.perf_counter()
            llm.eval(new)
            samples.append(time.perf_counter() - start)
        cost[at] = min(samples) * 1000
    llm.reset()
    return cost[20], cost[FAR]


def per_request_work(engine, turns: int = 50) -> float:  # noqa: ANN001
    """Fitting plus input guards for the ``turns``-th message of a conversation, with the memos
    warm (as they are when it grew one turn at a time): milliseconds, median of 20."""
    backend = engine.backends["local"]
    messages = [Message("system", SYSTEM)]
    for turn in range(1, turns):
        messages += [
            Message("user", question(0, turn)),
            Message("assistant", f"Fact {turn}: " + "it is odd. " * 12),
        ]
    messages.append(Message("user", "And one more?"))

    def once(msgs: list[Message]) -> float:
        start = time.perf_counter()
        engine.check_input(msgs)
        fit_messages(
            msgs, window=N_CTX, max_new_tokens=64, count=backend.count_tokens, cost=backend.message_tokens
        )
        return time.perf_counter() - start

    once(messages[:-2])  # the previous turn: memos hold every earlier message
    samples = []
    for i in range(20):
        msgs = [*messages[:-1], Message("user", f"And one more, variant {i}?")]  # a new message each time
        samples.append(once(msgs))
    return statistics.median(samples) * 1000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def row(label: str, by_turn: dict[int, float], turns: int) -> str:
    shown = [t for t in REPORTED_TURNS if t <= turns]
    cells = " | ".join(f"{by_turn[t]:.0f}" for t in shown)
    return f"| {label} | {cells} | {by_turn[shown[-1]] / by_turn[1]:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="conversations per path in the paired table")
    args = parser.parse_args()

    from llama_cpp import Llama

    engine = build_engine(Settings(n_ctx=N_CTX, cache=True))
    backend = engine.backends["local"]
    llm = Llama(model_path=str(backend.model_path), n_ctx=N_CTX, verbose=False)  # the same file
    shown = [t for t in REPORTED_TURNS if t <= args.turns]
    head = " | ".join(f"turn {t}" for t in shown)
    print(f"### Time to first token (ms), {args.max_tokens} new tokens per reply, n_ctx {N_CTX}\n")
    print(f"| path, conversations, temperature | {head} | last / first |")
    print("|---|" + "---|" * (len(shown) + 1))
    raw_rows: dict[float, dict[int, float]] = {}
    counts: list[str] = []  # the same rows' mean prompt tokens evaluated, printed after the times
    for temperature in (0.7, 0.0):
        llm.reset()
        warm(engine, llm)
        raw_rows[temperature], evaluated = run_lanes(
            partial(raw_turn, llm, max_tokens=args.max_tokens), 1, args.turns, temperature
        )
        label = f"raw llama-cpp-python, 1, {temperature:g}"
        print(row(label, raw_rows[temperature], args.turns), flush=True)
        counts.append(row(label, evaluated, args.turns))
    cache_peak = 0
    for temperature in (0.7, 0.0):
        for lanes in (1, 2, 4):
            backend.prompt_cache.clear()
            warm(engine, llm)  # every engine row starts alike: guards warm, the system prompt cached
            result, evaluated = run_lanes(
                partial(engine_turn, engine, max_tokens=args.max_tokens), lanes, args.turns, temperature
            )
            cache_peak = max(cache_peak, backend.prompt_cache.bytes)
            print(row(f"engine, {lanes}, {temperature:g}", result, args.turns), flush=True)
            counts.append(row(f"engine, {lanes}, {temperature:g}", evaluated, args.turns))
    if not args.skip_http:
        with launched_app(free_port(), n_ctx=N_CTX, store=False) as url, httpx.Client(base_url=url) as client:
            hello = {"system_prompt": SYSTEM, "max_new_tokens": 1, "context_length": N_CTX}
            sse_turn(client, {"user_input": "Hello!", "context": hello})  # the system prompt cached
            for temperature in (0.7, 0.0):
                for lanes in (1, 2, 4):
                    result, evaluated = run_lanes(
                        http_reply(client, args.max_tokens), lanes, args.turns, temperature
                    )
                    label = f"HTTP /api/chat (app.py), {lanes}, {temperature:g}"
                    print(row(label, result, args.turns), flush=True)
                    counts.append(row(label, evaluated, args.turns))
    print("\n### Prompt tokens evaluated per reply (mean over the conversations), same rows\n")
    print(f"| path, conversations, temperature | {head} | last / first |")
    print("|---|" + "---|" * (len(shown) + 1))
    print("\n".join(counts))

    print(
        f"\n### Engine against raw llama-cpp-python, in step, {args.repeats} conversations each (medians, ms)\n"
    )
    print(
        "| temperature, turn | pairs | raw TTFT | engine TTFT | engine - raw | raw outside llama.cpp | engine outside | engine - raw, outside |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(engine_against_raw(engine, llm, args.turns, args.max_tokens, args.repeats)), flush=True)

    decoding = decode_rows(*decode_speed(engine, llm))
    work = per_request_work(engine)
    near, far = position_cost(llm)
    print("\n### Other figures\n")
    print("| figure | value |\n|---|---|")
    print("\n".join(decoding))
    print(f"| fitting + input guards per request at turn 50 (ms) | {work:.2f} |")
    print(
        f"| position cost: 34 new tokens after 20 / after {FAR} tokens (ms) | {near:.0f} / {far:.0f} = {far / near:.2f} |"
    )
    print(f"| prompt cache, peak (MB) | {cache_peak / 2**20:.1f} |")
    print(f"| process RSS, this process (MB) | {rss_mb():.0f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
