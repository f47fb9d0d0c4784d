"""Benchmark: concurrent streaming chats through the cloud backend vs raw httpx streaming.

A loopback server (``tests/fault_server.py`` in its own process) streams every reply at a fixed
rate. The same requests go, in the same run, (a) through ``ChatEngine`` + ``OpenAICompatBackend``
and (b) through plain ``httpx`` streaming with a minimal SSE parse, both on a pooled client with
the same limits. Prints a markdown table; targets: throughput ratio >= 0.9 and added time to
first token <= 10 ms at 50 concurrent chats.

    python bench/bench_cloud.py [--levels 1,10,50,200] [--tokens 24] [--interval-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.together import released_together  # noqa: E402
from chat import ChatEngine, GenerationParams, Notice, TextDelta  # noqa: E402
from chat.backends.openai_compat import OpenAICompatBackend, Timeouts, _payload, build_http_client  # noqa: E402
from chat.messages import Message  # noqa: E402

MESSAGES = [Message("user", "Stream me a reply at a fixed rate, please.")]
PARAMS = GenerationParams(max_new_tokens=64, temperature=0)


@dataclass
class Result:
    tokens: int
    wall: float
    ttft: list[float]

    @property
    def throughput(self) -> float:
        return self.tokens / self.wall

    def ttft_ms(self, q: float) -> float:
        values = sorted(self.ttft)
        return values[min(int(q * len(values)), len(values) - 1)] * 1000


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fault_server.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise SystemExit(f"fault server did not start: {line!r}")
    return proc


def engine_chat(engine: ChatEngine) -> Callable[[], tuple[int, float]]:
    def chat() -> tuple[int, float]:
        start = time.perf_counter()
        first = None
        text = ""
        for event in engine.stream(MESSAGES, PARAMS, use_cache=False):
            if isinstance(event, Notice):
                raise RuntimeError(f"engine notice: {event.text}")
            if isinstance(event, TextDelta):
                text += event.text
                if first is None:
                    first = time.perf_counter() - start
        return len(text.split()), first or 0.0  # deltas that arrived together come joined

    return chat


def raw_chat(client: httpx.Client, url: str, model: str) -> Callable[[], tuple[int, float]]:
    payload = _payload(model, MESSAGES, PARAMS)
    timeout = Timeouts().for_attempt(120)

    def chat() -> tuple[int, float]:
        start = time.perf_counter()
        first = None
        tokens = 0
        with client.stream("POST", url + "/chat/completions", json=payload, timeout=timeout) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    continue
                chunk = json.loads(data)
                for choice in chunk.get("choices") or ():
                    if choice.get("delta", {}).get("content"):
                        tokens += 1
                        if first is None:
                            first = time.perf_counter() - start
        return tokens, first or 0.0

    return chat


def run(chat: Callable[[], tuple[int, float]], concurrency: int, rounds: int) -> Result:
    lock = threading.Lock()
    tokens = 0
    ttft: list[float] = []
    errors: list[BaseException] = []

    def worker(_: int, ready: Callable[[], None]) -> None:
        nonlocal tokens
        ready()
        for _ in range(rounds):
            try:
                n, first = chat()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                continue
            with lock:
                tokens += n
                ttft.append(first)

    _, start = released_together(concurrency, worker)
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} chats failed, first: {errors[0]!r}")
    return Result(tokens, wall, ttft)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,50,200")
    parser.add_argument("--tokens", type=int, default=24, help="tokens per reply")
    parser.add_argument("--interval-ms", type=int, default=20, help="server delay between tokens")
    parser.add_argument("--rounds", type=int, default=3, help="chats per concurrent user")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pool", type=int, default=None, help="max connections per client")
    args = parser.parse_args()

    port = args.port or _free_port()
    server = start_server(port)
    url = f"http://127.0.0.1:{port}/t/bench/ok:{args.tokens}:{args.interval_ms}/v1"
    pool = {"max_connections": args.pool} if args.pool else {}
    engine_client, raw_client = build_http_client(**pool), build_http_client(**pool)  # same limits
    engine = ChatEngine({"cloud": OpenAICompatBackend(url, "bench", client=engine_client)})
    modes = {"engine": engine_chat(engine), "raw": raw_chat(raw_client, url, "bench")}
    rows = []
    try:
        for chat in modes.values():  # warm up: connections, imports, first-request costs
            run(chat, 4, 1)
        for level in (int(x) for x in args.levels.split(",")):
            results: dict[str, list[Result]] = {name: [] for name in modes}
            order = list(modes)
            for trial in range(2):  # alternate the order so neither mode always goes first
                for name in order if trial == 0 else reversed(order):
                    results[name].append(run(modes[name], level, args.rounds))
            rows.append((level, _merge(results["engine"]), _merge(results["raw"])))
    finally:
        server.terminate()
        server.wait(timeout=10)
        engine_client.close()
        raw_client.close()

    print(
        f"Fixed-rate loopback server: {args.tokens} tokens per reply, one every {args.interval_ms} ms; "
        f"{args.rounds} chats per concurrent user, two trials per mode; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end.\n"
    )
    print("| concurrent | chats | engine tok/s | raw httpx tok/s | ratio | TTFT p50 engine / raw (ms) "
          "| added p50 (ms) | TTFT p95 engine / raw (ms) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    summary = ""
    for level, eng, raw in rows:
        ratio = eng.throughput / raw.throughput
        added = eng.ttft_ms(0.5) - raw.ttft_ms(0.5)
        print(
            f"| {level} | {len(eng.ttft)} | {eng.throughput:,.0f} | {raw.throughput:,.0f} | {ratio:.3f} "
            f"| {eng.ttft_ms(0.5):.1f} / {raw.ttft_ms(0.5):.1f} | {added:+.1f} "
            f"| {eng.ttft_ms(0.95):.1f} / {raw.ttft_ms(0.95):.1f} |"
        )
        verdicts.append(ratio >= 0.9)
        if level == 50:
            verdicts.append(added <= 10)
            summary = f"At 50 concurrent: ratio {ratio:.3f} (target >= 0.9), added TTFT {added:+.1f} ms (target <= 10)."
    counts = engine.counters.snapshot()
    print(f"\nEngine counters: retries {counts.get('retries', 0)}, errors {counts.get('errors', 0)}.")
    if summary:
        print(summary)
    print("Targets met." if all(verdicts) else "Targets NOT met.")
    return 0 if all(verdicts) else 1


def _merge(results: list[Result]) -> Result:
    return Result(
        sum(r.tokens for r in results),
        sum(r.wall for r in results),
        [t for r in results for t in r.ttft],
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
