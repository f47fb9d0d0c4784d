"""Service surface: /api/chat throughput on cache hits, and time to first token per entry point.

Launches ``python app.py`` (FastAPI + Gradio, the engine ``build_engine`` makes: guards and
cache) on a loopback port in its own process, then:

1. ``POST /api/chat`` cache hits at 1, 10 and 50 concurrent clients: requests per second and
   p50/p99 latency. A cache hit skips the model, so this measures the service layer itself
   (HTTP, JSON, guard, cache replay through the worker threads, metrics, the request log).
2. Time to first token of a fresh reply (distinct prompts, no cache hits) over ``/ws``, over
   ``/api/chat`` with ``stream``, and over the Gradio path (``gradio_client``, ``/chat``).

The load generator shares the machine's cores with the server; compare rows, not machines.
Prints Markdown tables.

    python bench/bench_service.py [--requests 400] [--rounds 6] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from app_process import launched_app, sse_turn  # noqa: E402
from gradio_client import Client  # noqa: E402
from support import free_port  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

CONCURRENCY = (1, 10, 50)
CACHED = {"user_input": "What is 2 + 2?", "context": {"temperature": 0, "max_new_tokens": 32}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class RawClient:
    """One keep-alive HTTP/1.1 connection over asyncio streams.

    httpx's async pool spends more time managing 50 connections than the server spends
    answering (a bare FastAPI route drops from ~800 to ~100 req/s with it here), so the load
    generator speaks the little HTTP it needs itself.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line, *header_lines = (await self.reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        length = int({k.lower(): v for k, v in headers.items()}["content-length"])
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def load(url: str, clients: int, total: int) -> tuple[float, list[float], int]:
    """(wall seconds, per-request latencies, errors) for ``total`` requests from ``clients`` connections."""
    parts = httpx.URL(url)
    body = json.dumps(CACHED).encode()
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, errors
        client = RawClient(parts.host, parts.port)
        try:
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                status, reply = await client.post_json("/api/chat", body)
                latencies.append(time.perf_counter() - start)
                if status != 200 or not json.loads(reply).get("from_cache"):
                    errors += 1
        finally:
            await client.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - start, latencies, errors


def ttft_ws(url: str, prompt: str, max_tokens: int) -> float:
    with connect(url.replace("http://", "ws://") + "ws") as ws:
        start = time.perf_counter()
        ws.send(json.dumps({"user_input": prompt, "context": {"max_new_tokens": max_tokens}}))
        first = None
        while True:
            event = json.loads(ws.recv(timeout=120))
            if event["type"] == "delta" and first is None:
                first = time.perf_counter() - start
            if event["type"] in ("done", "error"):
                return first if first is not None else float("nan")


def ttft_sse(url: str, prompt: str, max_tokens: int) -> float:
    body = {"user_input": prompt, "context": {"max_new_tokens": max_tokens}}
    with httpx.Client(base_url=url) as client:
        return sse_turn(client, body)[0]


def ttft_gradio(client: Client, prompt: str, max_tokens: int) -> float:
    start = time.perf_counter()
    job = client.submit(message=prompt, max_new_tokens=max_tokens, api_name="/chat")
    first = None
    for _ in job:
        if first is None:
            first = time.perf_counter() - start
    return first if first is not None else float("nan")


TOPICS = [
    "rivers", "mountains", "forests", "deserts", "oceans", "clouds", "gardens", "bridges", "castles",
    "islands", "volcanoes", "meadows", "lakes", "canyons", "glaciers", "valleys", "caves", "beaches",
    "libraries", "markets", "harbours", "orchards", "lighthouses", "windmills", "trains", "kites",
    "owls", "whales", "bees", "foxes",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--rounds", type=int, default=6, help="fresh replies per time-to-first-token path")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    if args.rounds * 3 > len(TOPICS):
        sys.exit(f"--rounds can be at most {len(TOPICS) // 3}")

    with launched_app(free_port(), n_ctx=2048, store=True) as url:
        warm = httpx.post(url + "api/chat", json=CACHED, timeout=120).json()
        assert warm.get("finish_reason") == "stop", warm  # only complete replies are cached
        if not httpx.post(url + "api/chat", json=CACHED, timeout=120).json().get("from_cache"):
            sys.exit("no cache hit: this benchmark needs the response cache (CHAT_CACHE on)")

        print("### /api/chat cache hits\n")
        print("| concurrent clients | requests | req/s | p50 ms | p99 ms | errors |")
        print("|---:|---:|---:|---:|---:|---:|")
        for clients in CONCURRENCY:
            asyncio.run(load(url, clients, min(100, args.requests)))  # warm connections and threads
            wall, latencies, errors = asyncio.run(load(url, clients, args.requests))
            print(
                f"| {clients} | {args.requests} | {args.requests / wall:.0f} | "
                f"{percentile(latencies, 50) * 1000:.1f} | {percentile(latencies, 99) * 1000:.1f} | {errors} |"
            )

        gradio = Client(
            url, verbose=False, ssl_verify=False
        )  # http://: skip per-call CA loading (see bench_local)
        paths = {
            "/ws (WebSocket)": lambda p: ttft_ws(url, p, args.max_tokens),
            "/api/chat stream (SSE)": lambda p: ttft_sse(url, p, args.max_tokens),
            "Gradio /chat (gradio_client)": lambda p: ttft_gradio(gradio, p, args.max_tokens),
        }
        results: dict[str, list[float]] = {name: [] for name in paths}
        topics = iter(TOPICS)
        for _ in range(args.rounds):
            for name, measure in paths.items():
                # A distinct prompt per path and round: every reply is generated, none cached.
                results[name].append(measure(f"Write one sentence about {next(topics)}."))
        gradio.close()

    print(f"\n### Time to first token, fresh replies (SmolLM2-135M, {args.rounds} rounds each)\n")
    print("| path | p50 ms | mean ms | min ms |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        print(
            f"| {name} | {statistics.median(values) * 1000:.0f} | "
            f"{statistics.fmean(values) * 1000:.0f} | {min(values) * 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
