"""Time to first token by turn, for several users sharing one model in long conversations.

1, 2 and 4 conversations take turns (each message goes to the next conversation), at temperature
0.7 and 0, through the app's engine (guards on, response cache on: no prompt repeats) and through
``python app.py`` over HTTP (``POST /api/chat`` with SSE, the history sent each time), beside raw
llama-cpp-python on one conversation with its own prefix reuse: the best one conversation can do.
Then decode speed (engine against raw), the work per request at turn 50 (fitting and input
guards, without the model), prompt-cache memory and process RSS. Prints Markdown tables.

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
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from app_process import launched_app, sse_turn  # noqa: E402
from support import free_port  # noqa: E402

from chat import GenerationParams, Message, Settings  # noqa: E402
from chat.context import fit_messages  # noqa: E402
from chat.factory import build_engine  # noqa: E402

N_CTX = 4096
SYSTEM = "You are a helpful assistant. Answer briefly."
REPORTED_TURNS = (1, 5, 10, 20)
FAR = 1800  # a position late in a 20-turn conversation (about 1,700-1,900 tokens)
# -> (ttft seconds, reply text, prompt tokens evaluated: NaN if unknown)
Reply = Callable[[list[dict[str, str]], float], tuple[float, str, float]]
_rows = itertools.count(1)  # each row's conversations get their own messages (see above)


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
            ttft, text, count = reply(history, temperature)
            history.append({"role": "assistant", "content": text})
            times.setdefault(turn, []).append(ttft * 1000)
            evaluated.setdefault(turn, []).append(count)
    return (
        {turn: statistics.mean(values) for turn, values in times.items()},
        {turn: statistics.mean(values) for turn, values in evaluated.items()},
    )


def engine_reply(engine, max_tokens: int) -> Reply:  # noqa: ANN001
    def reply(history: list[dict[str, str]], temperature: float) -> tuple[float, str, float]:
        params = GenerationParams(temperature=temperature, max_new_tokens=max_tokens, context_length=N_CTX)
        done = engine.reply(history, params)
        evaluated = done.stats.evaluated_prompt_tokens
        return done.stats.time_to_first_token or float("nan"), done.text, _number(evaluated)

    return reply


def raw_reply(llm, max_tokens: int) -> Reply:  # noqa: ANN001
    """llama-cpp-python's own chat call: its KV prefix reuse is all the caching it has."""

    def reply(history: list[dict[str, str]], temperature: float) -> tuple[float, str, float]:
        import llama_cpp

        llama_cpp.llama_perf_context_reset(llm.ctx)
        start = time.perf_counter()
        first = None
        pieces = []
        for chunk in llm.create_chat_completion(
            history, temperature=temperature, max_tokens=max_tokens, stream=True
        ):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                first = first or time.perf_counter()
                pieces.append(text)
        evaluated = llama_cpp.llama_perf_context(llm.ctx).n_p_eval  # llama.cpp's own count
        return (first or start) - start, "".join(pieces), float(evaluated)

    return reply


def http_reply(client: httpx.Client, max_tokens: int) -> Reply:
    def reply(history: list[dict[str, str]], temperature: float) -> tuple[float, str, float]:
        *earlier, newest = history
        context = {
            "system_prompt": earlier[0]["content"],
            "history": earlier[1:],
            "temperature": temperature,
            "max_new_tokens": max_tokens,
            "context_length": N_CTX,
        }
        ttft, done = sse_turn(client, {"user_input": newest["content"], "context": context})
        return ttft, done.get("reply", ""), _number(done.get("evaluated_prompt_tokens"))

    return reply


def decode_ratio(engine, llm, max_tokens: int) -> tuple[float, float]:  # noqa: ANN001
    """Decode tokens/s of the engine and of raw llama-cpp-python on the same prompts."""
    ours, raw = [], []
    for i in range(3):
        history = [{"role": "user", "content": f"Write a long story about lighthouse number {i}."}]
        params = GenerationParams(temperature=0.7, max_new_tokens=128, context_length=N_CTX)
        ours.append(engine.reply(history, params).stats.tokens_per_second or 0)
        first, count = None, 0
        for chunk in llm.create_chat_completion(history, temperature=0.7, max_tokens=128, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                count += 1
        raw.append((count - 1) / (time.perf_counter() - first))
    return statistics.median(ours), statistics.median(raw)


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


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def row(label: str, by_turn: dict[int, float], turns: int) -> str:
    shown = [t for t in REPORTED_TURNS if t <= turns]
    cells = " | ".join(f"{by_turn[t]:.0f}" for t in shown)
    return f"| {label} | {cells} | {by_turn[shown[-1]] / by_turn[1]:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()

    from llama_cpp import Llama

    from chat.models import embedded_model_path

    engine = build_engine(Settings(n_ctx=N_CTX, cache=True))
    backend = engine.backends["local"]
    llm = Llama(model_path=str(embedded_model_path()), n_ctx=N_CTX, verbose=False)
    shown = [t for t in REPORTED_TURNS if t <= args.turns]
    head = " | ".join(f"turn {t}" for t in shown)
    print(f"### Time to first token (ms), {args.max_tokens} new tokens per reply, n_ctx {N_CTX}\n")
    print(f"| path, conversations, temperature | {head} | last / first |")
    print("|---|" + "---|" * (len(shown) + 1))
    raw_rows: dict[float, dict[int, float]] = {}
    counts: list[str] = []  # the same rows' mean prompt tokens evaluated, printed after the times
    for temperature in (0.7, 0.0):
        llm.reset()
        raw_rows[temperature], evaluated = run_lanes(
            raw_reply(llm, args.max_tokens), 1, args.turns, temperature
        )
        label = f"raw llama-cpp-python, 1, {temperature:g}"
        print(row(label, raw_rows[temperature], args.turns), flush=True)
        counts.append(row(label, evaluated, args.turns))
    # Every engine row starts alike, the first one too: guards warm, the system prompt cached.
    engine.reply(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello!"}],
        GenerationParams(max_new_tokens=8),
    )
    cache_peak = 0
    for temperature in (0.7, 0.0):
        for lanes in (1, 2, 4):
            backend.prompt_cache.clear()
            result, evaluated = run_lanes(
                engine_reply(engine, args.max_tokens), lanes, args.turns, temperature
            )
            cache_peak = max(cache_peak, backend.prompt_cache.bytes)
            print(row(f"engine, {lanes}, {temperature:g}", result, args.turns), flush=True)
            counts.append(row(f"engine, {lanes}, {temperature:g}", evaluated, args.turns))
            if lanes == 1:
                gaps = [result[t] - raw_rows[temperature][t] for t in shown]
                print(f"| (engine - raw, ms) | {' | '.join(f'{g:+.0f}' for g in gaps)} | |", flush=True)
    if not args.skip_http:
        with launched_app(free_port(), n_ctx=N_CTX, store=False) as url, httpx.Client(base_url=url) as client:
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

    ours, raw = decode_ratio(engine, llm, args.max_tokens)
    work = per_request_work(engine)
    near, far = position_cost(llm)
    print("\n### Other figures\n")
    print("| figure | value |\n|---|---|")
    print(f"| decode tokens/s, engine / raw | {ours:.1f} / {raw:.1f} = {ours / raw:.3f} |")
    print(f"| fitting + input guards per request at turn 50 (ms) | {work:.2f} |")
    print(
        f"| position cost: 34 new tokens after 20 / after {FAR} tokens (ms) | {near:.0f} / {far:.0f} = {far / near:.2f} |"
    )
    print(f"| prompt cache, peak (MB) | {cache_peak / 2**20:.1f} |")
    print(f"| process RSS, this process (MB) | {rss_mb():.0f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
