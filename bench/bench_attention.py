"""Flash or plain attention, one pool of KV cells or a stream per slot, in-process (issue 29).

The scheduler's context (``--parallel`` above 1) keeps every slot's conversation in one pool of
KV cells with flash attention (``chat.backends.local.scheduler``: ``FLASH_ATTENTION``,
``KV_UNIFIED``); this compares that with plain attention and with a stream of cells per slot.
Each configuration runs in a fresh process, in turn, ``--rounds`` times; within a process the
scenarios run twice, so the second pass meets slots that already hold conversations (as a server
does after its first minutes):

- a lone short request: time to first token and its tokens/s;
- a lone request with about 1,000 tokens of conversation, then its next short turn (the
  conversation's state is reused: only the new turn is evaluated);
- eight short requests at once (four slots: four of them wait for a slot);
- four requests with about 1,000 tokens of conversation each, at once.

    python bench/bench_attention.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.together import released_together  # noqa: E402

SENTENCE = "the city was built on seven hills and its people traded grain and oil across the sea"
WORDS = SENTENCE.split(" ")
SCENARIOS = (
    ("lone short: first token ms", "lone_ttft"),
    ("lone short: tok/s", "lone_rate"),
    ("lone, 1,000 tokens of conversation: first token ms", "long_ttft"),
    ("its next short turn: first token ms", "next_ttft"),
    ("8 short at once: worst first token ms", "eight_worst"),
    ("8 short at once: tok/s in all", "eight_rate"),
    ("4 long at once: worst first token ms", "four_worst"),
    ("4 long at once: tok/s in all", "four_rate"),
)


def history(seed: int, turns: int) -> list:
    from chat.messages import Message

    rnd, messages = random.Random(seed), []
    for i in range(turns):
        messages.append(
            Message("user", f"Question {i} from reader {seed}: tell me about topic {rnd.randint(0, 9999)}.")
        )
        messages.append(Message("assistant", " ".join(rnd.choice(WORDS) for _ in range(45))))
    messages.append(Message("user", f"And finally, reader {seed}, summarise it."))
    return messages


def measure(flash: bool, model: Path, unified: bool = True) -> dict[str, list[float]]:
    """One process's figures: each scenario twice (fresh slots, then used ones)."""
    from chat.backends.base import Finish
    from chat.backends.local import scheduler
    from chat.backends.local.backend import LlamaCppBackend
    from chat.messages import GenerationParams, Message

    scheduler.FLASH_ATTENTION = flash
    scheduler.KV_UNIFIED = unified
    backend = LlamaCppBackend(model, n_ctx=2048, n_threads=1, parallel=4)

    def turn(messages: list, tokens: int) -> tuple[float, int, float]:
        start, first, count = time.perf_counter(), None, 0
        for chunk in backend.stream(messages, GenerationParams(temperature=0.0, max_new_tokens=tokens)):
            if isinstance(chunk, str) and first is None:
                first = time.perf_counter() - start
            if isinstance(chunk, Finish):
                count = chunk.completion_tokens
        return first or float("nan"), count, time.perf_counter() - start

    def together(conversations: list, tokens: int) -> tuple[float, float]:
        def user(i: int, ready: Callable[[], None]) -> tuple[float, int, float]:
            ready()
            return turn(conversations[i], tokens)

        results, start = released_together(len(conversations), user)
        return max(r[0] for r in results) * 1000, sum(r[1] for r in results) / (time.perf_counter() - start)

    out: dict[str, list[float]] = {key: [] for _, key in SCENARIOS}
    turn([Message("user", "Hello.")], 8)  # warm
    for n in range(2):
        first, count, total = turn([Message("user", f"Write an essay about Rome. ({n})")], 128)
        out["lone_ttft"].append(first * 1000)
        out["lone_rate"].append(count / (total - first))
        conversation = history(100 + n, 14)
        out["long_ttft"].append(turn(conversation, 32)[0] * 1000)
        follow = [*conversation, Message("assistant", "Sure."), Message("user", "One more detail, please.")]
        out["next_ttft"].append(turn(follow, 32)[0] * 1000)
        worst, rate = together(
            [[Message("user", f"Write an essay about topic {i}. ({n})")] for i in range(8)], 128
        )
        out["eight_worst"].append(worst)
        out["eight_rate"].append(rate)
        worst, rate = together([history(200 + 10 * n + i, 12) for i in range(4)], 64)
        out["four_worst"].append(worst)
        out["four_rate"].append(rate)
    backend.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="processes per configuration, alternating")
    parser.add_argument(
        "--one", choices=("flash", "plain", "split-plain", "split-flash"), help=argparse.SUPPRESS
    )
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(
            json.dumps(
                measure(args.one.endswith("flash"), Path(args.model), not args.one.startswith("split"))
            )
        )
        return
    from chat.backends.local.model_files import embedded_model_path
    from chat.backends.local.requantize import cpu_copy

    names = ("plain", "flash", "split-plain", "split-flash")
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    with tempfile.TemporaryDirectory() as folder:
        model = cpu_copy(embedded_model_path(), Path(folder))
        for _ in range(args.rounds):
            for name in names:
                command = [sys.executable, __file__, "--one", name, "--model", str(model)]
                result = json.loads(
                    subprocess.run(command, check=True, capture_output=True, text=True).stdout
                )
                for key, values in result.items():
                    figures[name].setdefault(key, []).extend(values)
    print(f"{args.rounds} processes each, two passes per process; medians (first pass / second pass)\n")
    print("| scenario (4 slots, 1 thread) | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, key in SCENARIOS:
        cells = []
        for name in names:
            values = figures[name][key]
            first, second = statistics.median(values[0::2]), statistics.median(values[1::2])
            cells.append(f"{first:.0f} / {second:.0f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
