"""Guards and cache overhead: a cache hit's full reply, the output filter, the input check.

The cache hit goes through ``engine.stream`` in-process on the engine ``build_engine(Settings())``
builds (real model, shipped rules). The output filter is fed the chunks the real model streamed
(token by token), repeated to a long reply, and fixed-size chunks for reference. Prints a
Markdown table.

    python bench/bench_guards.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chat import GenerationParams, Message, Settings  # noqa: E402
from chat.factory import build_engine  # noqa: E402
from chat.guards import ContentGuard  # noqa: E402

PROMPTS = {
    "en": "Write a short story about a lighthouse keeper.",
    "zh": "请用中文写一段关于春天的短文。",
}
SYNTHETIC_ZH = "大海覆盖了地球的大部分。每天都有船只航行，水手们依靠星星、太阳和地图辨认方向。" * 40


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def filter_cost(guard: ContentGuard, chunks: list[str], rounds: int) -> float:
    """Best-of-rounds milliseconds per 1,000 characters for the output filter alone."""
    chars = sum(map(len, chunks))

    def run() -> None:
        flt = guard.new_filter()
        for chunk in chunks:
            flt.feed(chunk)
        flt.flush()

    return min(timed(run, rounds)) * 1000 / (chars / 1000)


def model_chunks(engine, prompt: str, min_chars: int = 5000) -> list[str]:  # noqa: ANN001
    """The chunks the real model streams for ``prompt``, repeated to at least ``min_chars``."""
    backend = engine.backends["local"]
    params = GenerationParams(temperature=0.7, max_new_tokens=256, seed=7)
    chunks = [c for c in backend.stream([Message("user", prompt)], params) if isinstance(c, str) and c]
    text = "".join(chunks)
    guard = engine.output_guard
    flt = guard.new_filter()
    assert "".join(flt.feed(c) for c in chunks) + flt.flush() == text, "filter changed a reply"
    return chunks * max(1, -(-min_chars // max(1, len(text))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    engine = build_engine(Settings())
    guard = engine.output_guard
    assert isinstance(guard, ContentGuard) and engine.cache is not None
    rows: list[tuple[str, str, str, bool]] = []

    # 1. A cache hit's full reply through engine.stream.
    question = [{"role": "user", "content": PROMPTS["en"]}]
    params = GenerationParams(temperature=0, max_new_tokens=256)
    first = engine.reply(question, params)
    if first.stats.finish_reason != "stop":  # only complete replies are stored: store one by hand
        backend = engine.backends["local"]
        fitted = [Message("user", PROMPTS["en"])]
        engine.cache.put(engine.cache.key(backend, fitted, params), first.text)
    hit = timed(lambda: list(engine.stream(question, params)), args.rounds)
    done = list(engine.stream(question, params))[-1]
    assert done.stats.from_cache, "the benchmark request was not a cache hit"
    median, p95 = statistics.median(hit) * 1000, sorted(hit)[int(0.95 * len(hit)) - 1] * 1000
    rows.append(
        (
            f"cache hit, full reply via engine.stream ({len(done.text)} chars), median / p95",
            f"{median:.3f} / {p95:.3f} ms",
            "<= 5 ms",
            p95 <= 5,
        )
    )

    # 2. The output filter, per 1,000 characters.
    for lang, prompt in PROMPTS.items():
        chunks = model_chunks(engine, prompt)
        mean_chunk = sum(map(len, chunks)) / len(chunks)
        cost = filter_cost(guard, chunks, max(20, args.rounds // 10))
        rows.append(
            (
                f"output filter, real model chunks ({lang}, {mean_chunk:.1f} chars/chunk), per 1,000 chars",
                f"{cost:.3f} ms",
                "<= 1 ms",
                cost <= 1,
            )
        )
    for size in (1, 4):
        chunks = [SYNTHETIC_ZH[i : i + size] for i in range(0, len(SYNTHETIC_ZH), size)]
        cost = filter_cost(guard, chunks, max(20, args.rounds // 10))
        rows.append(
            (
                f"output filter, Chinese in {size}-char chunks, per 1,000 chars",
                f"{cost:.3f} ms",
                "<= 1 ms",
                cost <= 1,
            )
        )

    # 3. The input check (limits, word lists, regular expressions) on a long message.
    message = [Message("user", SYNTHETIC_ZH[:1000] + " " + "The sea is wide. " * 58)]
    check = timed(lambda: guard.check(message), args.rounds)
    rows.append(
        (
            f"input check, one {len(message[0].content)}-char message, median",
            f"{statistics.median(check) * 1000:.3f} ms",
            "(no target)",
            True,
        )
    )

    print("| measurement | result | target | met |")
    print("|---|---|---|---|")
    for name, result, target, ok in rows:
        print(f"| {name} | {result} | {target} | {'yes' if ok else 'NO'} |")
    for backend in engine.backends.values():
        backend.close()


if __name__ == "__main__":
    main()
