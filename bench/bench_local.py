"""Local backend overhead: the app's engine against llama-cpp-python's own streaming call.

Same model object, prompts and settings in one run; each measurement starts from an empty KV
cache (``reset()``), so prompt evaluation is equal work for both. Then the same through the
launched app over HTTP with gradio_client. Prints a Markdown table.

    python bench/bench_local.py [--rounds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chat import ChatEngine, GenerationParams, Settings, TextDelta  # noqa: E402
from chat.factory import build_local_backend  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works, step by step.",
    "请用中文写一段关于春天的短文。",
]


def measure(stream_fn) -> tuple[float, float, int]:  # noqa: ANN001
    """(time to first token, decode tokens/s, tokens) for one streamed reply."""
    start = time.perf_counter()
    first = None
    tokens = 0
    for _ in stream_fn():
        tokens += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return first - start, (tokens - 1) / (end - first), tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    backend = build_local_backend(Settings(n_ctx=2048))
    llm = backend._llm  # the same Llama object for both sides
    engine = ChatEngine({"local": backend})
    params = GenerationParams(temperature=0.7, top_p=0.95, max_new_tokens=args.max_tokens, seed=1234)

    def raw(prompt: str):  # noqa: ANN202
        llm.reset()
        for chunk in llm.create_chat_completion(
            [{"role": "user", "content": prompt}],
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stream=True,
        ):
            if chunk["choices"][0]["delta"].get("content"):
                yield chunk

    def ours(prompt: str):  # noqa: ANN202
        llm.reset()
        for event in engine.stream([{"role": "user", "content": prompt}], params, use_cache=False):
            if isinstance(event, TextDelta):
                yield event

    results: dict[str, list[tuple[float, float, int]]] = {
        "llama-cpp-python": [],
        "engine": [],
        "app (HTTP)": [],
    }
    for prompt in PROMPTS:  # warm-up
        measure(lambda p=prompt: raw(p))
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            results["llama-cpp-python"].append(measure(lambda p=prompt: raw(p)))
            results["engine"].append(measure(lambda p=prompt: ours(p)))

    from gradio_client import Client

    from chat.personas import load_personas
    from chat.ui import build_ui

    demo = build_ui(engine, personas=load_personas(), max_context=2048)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    client = Client(url, verbose=False)

    def over_http(prompt: str):  # noqa: ANN202
        llm.reset()
        job = client.submit(
            message=prompt,
            temperature=params.temperature,
            top_p=params.top_p,
            max_new_tokens=params.max_new_tokens,
            api_name="/chat",
        )
        yield from job

    app_engine: list[tuple[float, float, int]] = []
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            app_engine.append(measure(lambda p=prompt: ours(p)))
            results["app (HTTP)"].append(measure(lambda p=prompt: over_http(p)))
    client.close()
    demo.close()

    med = statistics.median
    base_ttft = med(r[0] for r in results["llama-cpp-python"])
    base_tps = med(r[1] for r in results["llama-cpp-python"])
    print(
        f"SmolLM2-135M Q4_1, {args.rounds} rounds x {len(PROMPTS)} prompts, max {args.max_tokens} tokens, 2048 ctx\n"
    )
    print(
        "| path | median TTFT (ms) | median decode tok/s | tok/s ratio vs llama-cpp-python | TTFT diff (ms) |"
    )
    print("|---|---|---|---|---|")
    for name in ("llama-cpp-python", "engine"):
        ttft = med(r[0] for r in results[name])
        tps = med(r[1] for r in results[name])
        print(
            f"| {name} | {ttft * 1000:.1f} | {tps:.1f} | {tps / base_tps:.3f} | {(ttft - base_ttft) * 1000:+.1f} |"
        )
    http_ttft = med(r[0] for r in results["app (HTTP)"])
    engine_ttft = med(r[0] for r in app_engine)
    print(
        f"| app over HTTP (gradio_client) | {http_ttft * 1000:.1f} | (chunks: n/a) | — |"
        f" {(http_ttft - engine_ttft) * 1000:+.1f} vs engine in the same phase |"
    )
    print("\nTargets: tok/s ratio >= 0.97; engine TTFT diff <= 10 ms; HTTP TTFT overhead <= 60 ms.")


if __name__ == "__main__":
    main()
