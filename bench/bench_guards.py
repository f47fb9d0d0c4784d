"""Guards: how well the input guard separates requests for harm from talk about harm, and what
the guards and the cache cost.

1. Accuracy on the labelled evaluation set (``tests/data/guard_eval``): precision and recall by
   language and category, on the held-out test part and on its evasion copy, for the rule layer
   alone and with a guard model (rules first; the model sees what the rules pass). Without
   ``--guard-model`` / ``--guard-url`` the embedded SmolLM2 stands in for a guard model, which
   only shows the plumbing and its cost, not what a real guard model achieves.
2. Cost: the rule layer per message and per 1,000 characters, the guard model per call, a cache
   hit through ``engine.stream``, and the output filter on the real model's chunks.
3. The semantic layer (``chat.guards.semantic``) on an independent split (``--test-split``,
   default ``tests/data/guard_semantic/test.jsonl``) and its evasion copy: the rule layer alone against
   rules + semantic, request recall and false positives by language and category, and the time
   the encoder and classifier add per message (``bench_guards_semantic.py``).

    python bench/bench_guards.py [--rounds 200] [--eval-only] [--semantic-only] [--test-split PATH]
                                 [--cross-validation-only] [--cv-grouping SEED,LINES] [--latency-only]
                                 [--encoder-threads]
                                 [--guard-model PATH | --guard-url URL]
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

from bench_guards_semantic import (  # noqa: E402
    SPLIT,
    cross_validation,
    encoder_threads,
    latency_by_length,
    semantic_section,
)

from chat import GenerationParams, Message, Settings  # noqa: E402
from chat.backends.local.model_files import embedded_model_path  # noqa: E402
from chat.engine import OutputFilter  # noqa: E402
from chat.factory import build_engine  # noqa: E402
from chat.guards import ContentGuard, RuleSet, StreamFilter, evalset  # noqa: E402
from chat.guards.model import ChatGuardClient, LocalGuardModel  # noqa: E402
from chat.guards.moderation import Moderation, ModerationUnavailable  # noqa: E402

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


def filter_cost(make: Callable[[], OutputFilter], chunks: list[str], rounds: int) -> float:
    """Best-of-rounds milliseconds per 1,000 characters for an output filter alone."""
    chars = sum(map(len, chunks))

    def run() -> None:
        flt = make()
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


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def accuracy_table(refuses: Callable[[str], bool], test: list[evalset.Item], label: str) -> list[str]:
    """Markdown rows: precision / recall by slice on the test part, recall on its evasion copy."""
    plain, _ = evalset.score(test, refuses)
    evaded, _ = evalset.score(evalset.evasion_copy(test), refuses)
    rows = []
    slices = ["all", "lang:zh", "lang:en", *(f"cat:{c}" for c in evalset.CATEGORIES[:-1])]
    for name in slices:
        p, e = plain.get(name, evalset.Score()), evaded.get(name, evalset.Score())
        rows.append(
            f"| {label} | {name.replace('cat:', '').replace('lang:', 'lang ')} | {pct(p.precision)} | "
            f"{pct(p.recall)} ({p.tp}/{p.tp + p.fn}) | {pct(e.recall)} ({e.tp}/{e.tp + e.fn}) |"
        )
    for kind in ("benign", "mention"):
        for lang in ("zh", "en"):
            s = plain.get(f"label:{kind}:{lang}", evalset.Score())
            target = "<= 0.01" if kind == "benign" else "<= 0.10"
            rows.append(
                f"| {label} | false positives, {kind} {lang} ({target}) | {pct(s.fp_rate)} ({s.fp}/{s.fp + s.tn}) | | |"
            )
    return rows


def eval_section(args: argparse.Namespace) -> list[str]:
    rules = RuleSet.load()
    test = evalset.load("test")
    lines = [
        "| layer | slice | precision (test) | recall (test) | recall (evasion copy) |",
        "|---|---|---|---|---|",
    ]
    lines += accuracy_table(lambda text: rules.check_input(text) is not None, test, "rules")

    # time per message and per 1,000 characters, rule layer alone
    texts = [i.text for i in test] + [i.text for i in evalset.evasion_copy(test)]
    per_message = min(timed(lambda: [rules.check_input(t) for t in texts], 5)) / len(texts) * 1000
    long_text = (
        SYNTHETIC_ZH[:500] + " " + ("How do I learn to sail? My neighbour helps me with the boat. " * 9)[:499]
    )
    per_k = min(timed(lambda: rules.check_input(long_text), 200)) * 1000 / (len(long_text) / 1000)
    cost = [
        f"| rule layer, per message of the test part and its evasion copy (mean of {len(texts)}) | {per_message:.3f} ms | | |",
        f"| rule layer, per 1,000 characters (zh + en, asks in every sentence) | {per_k:.3f} ms | < 2 ms | {'yes' if per_k < 2 else 'NO'} |",
    ]

    model, name = guard_model(args)
    if model is not None:
        calls: list[float] = []

        def combined(text: str) -> bool:
            if rules.check_input(text) is not None:
                return True
            start = time.perf_counter()
            try:
                return model.flagged(text)
            except ModerationUnavailable:
                return True  # fails closed, as in the app
            finally:
                calls.append(time.perf_counter() - start)

        sample = sampled(test, args.guard_sample)
        lines += accuracy_table(combined, sample, f"rules + {name}")
        mean = statistics.mean(calls) * 1000 if calls else 0.0
        median = statistics.median(calls) * 1000 if calls else 0.0
        cost.append(
            f"| {name}, per call, median / mean ({len(calls)} calls; {len(sample)} of {len(test)} test items) "
            f"| {median:.0f} / {mean:.0f} ms | | |"
        )
    return [*lines, "", "| cost | result | target | met |", "|---|---|---|---|", *cost]


def sampled(items: list[evalset.Item], per_label: int) -> list[evalset.Item]:
    """Every harmful item (the model only sees the rules' misses) and ``per_label`` of each other
    label, half Chinese and half English."""
    if per_label <= 0:
        return items
    out = [i for i in items if i.label == "harmful"]
    for label in ("benign", "mention"):
        for lang in ("zh", "en"):  # half each, spread over the part
            pool = [i for i in items if i.label == label and i.lang == lang]
            step = max(1, len(pool) // max(1, per_label // 2))
            out += pool[::step][: per_label // 2]
    return out


def guard_model(args: argparse.Namespace) -> tuple[Moderation | None, str]:
    if args.no_guard_model:
        return None, ""
    if args.guard_url:
        return ChatGuardClient(
            args.guard_url, model=args.guard_model, timeout=args.guard_timeout
        ), args.guard_model
    if args.guard_model:
        return LocalGuardModel(Path(args.guard_model), timeout=args.guard_timeout), Path(
            args.guard_model
        ).stem
    stand_in = LocalGuardModel(embedded_model_path(), timeout=args.guard_timeout)
    return stand_in, "stand-in SmolLM2-135M (not a guard model)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--eval-only", action="store_true", help="accuracy and rule cost only")
    parser.add_argument("--engine-only", action="store_true", help="cache and output filter cost only")
    parser.add_argument("--guard-model", default="", help="GGUF of a guard model (default: the stand-in)")
    parser.add_argument("--guard-url", default="", help="OpenAI-compatible endpoint of a guard model")
    parser.add_argument("--guard-timeout", type=float, default=60.0)
    parser.add_argument(
        "--guard-sample", type=int, default=20, help="benign and mention items per label (0: all)"
    )
    parser.add_argument("--no-guard-model", action="store_true")
    parser.add_argument("--semantic-only", action="store_true", help="the semantic layer's section only")
    parser.add_argument(
        "--test-split",
        type=Path,
        nargs="+",
        default=[SPLIT],
        help="the semantic layer's independent splits, pooled (JSON lines; default tests/data/guard_semantic/test.jsonl)",
    )
    parser.add_argument(
        "--cross-validation-only",
        action="store_true",
        help="the cross-validation on the training examples only (no test split is read)",
    )
    parser.add_argument(
        "--cv-grouping",
        default="0,5",
        help="SEED,LINES: the cross-validation's assignment of groups to folds and lines per group",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="the semantic layer's cost by message length, on the training examples (no test split is read)",
    )
    parser.add_argument(
        "--encoder-threads",
        action="store_true",
        help="the encoder on one thread and on two, idle and beside a generating chat model (the first test split's messages)",
    )
    args = parser.parse_args()

    if args.encoder_threads:
        print("\n".join(encoder_threads(args.test_split[0])))
        return
    if args.latency_only:
        print("\n".join(latency_by_length()))
        return
    if args.semantic_only or args.cross_validation_only or not args.engine_only:
        seed, block = (int(x) for x in args.cv_grouping.split(","))
        print("\n".join(cross_validation(seed=seed, block=block)))
        print()
        if args.cross_validation_only:
            return
        print("\n".join(semantic_section(args.test_split)))
        print()
    if args.semantic_only:
        return
    if not args.engine_only:
        print("\n".join(eval_section(args)))
    if args.eval_only:
        return
    print()
    engine_rows(args)


def engine_rows(args: argparse.Namespace) -> None:
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
        cost = filter_cost(guard.new_filter, chunks, max(20, args.rounds // 10))
        phrases = filter_cost(lambda: StreamFilter(guard.rules.output), chunks, max(20, args.rounds // 10))
        rows.append(
            (
                f"output filter, real model chunks ({lang}, {mean_chunk:.1f} chars/chunk), per 1,000 chars "
                "(phrases + credential masking / phrases alone)",
                f"{cost:.3f} / {phrases:.3f} ms",
                "<= 1 ms",
                cost <= 1,
            )
        )
    for size in (1, 4):
        chunks = [SYNTHETIC_ZH[i : i + size] for i in range(0, len(SYNTHETIC_ZH), size)]
        cost = filter_cost(guard.new_filter, chunks, max(20, args.rounds // 10))
        rows.append(
            (
                f"output filter, Chinese in {size}-char chunks, per 1,000 chars",
                f"{cost:.3f} ms",
                "<= 1 ms",
                cost <= 1,
            )
        )

    # 3. The input check (limits, word lists, regular expressions, intent rules) on a long message:
    # new, and again (a history message: its verdict is memoised).
    message = [Message("user", SYNTHETIC_ZH[:1000] + " " + "The sea is wide. " * 58)]
    fresh = timed(lambda: ContentGuard(guard.rules).check(message), args.rounds)
    guard.check(message)
    again = timed(lambda: guard.check(message), args.rounds)
    rows.append(
        (
            f"input check, one new {len(message[0].content)}-char message, median",
            f"{statistics.median(fresh) * 1000:.3f} ms",
            "(no target)",
            True,
        )
    )
    history = [
        Message("user" if i % 2 == 0 else "assistant", f"turn {i}: " + SYNTHETIC_ZH[:200]) for i in range(99)
    ]
    guard.check(history)
    at_50 = timed(lambda: guard.check(history), args.rounds)
    rows.append(
        (
            "input check, same message again (memoised), median / turn 50 history of 99 messages, median",
            f"{statistics.median(again) * 1000:.3f} / {statistics.median(at_50) * 1000:.3f} ms",
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
