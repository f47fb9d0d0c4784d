"""Several users at once: time to first token and total tokens/s, the app against llama-server.

Runs 1, 2, 4 and 8 users sending distinct prompts at the same moment (128 new tokens each,
greedy) over HTTP, against ``python app.py --parallel 1`` (one at a time), the app with the
default ``--parallel`` (8 for this model and window), the app with ``--parallel 4``, and llama.cpp's own ``llama-server -np 8``
(continuous batching) on the same model file (the app's 16-bit copy) and the same threads, in the same run.
llama-server is not shipped: build it from the llama.cpp sources vendored in the
llama-cpp-python sdist (``cmake -B build && cmake --build build --target llama-server``) and
pass ``--llama-server PATH``; without it those rows are skipped.

    python bench/bench_parallel.py --llama-server /tmp/llama-build/bin/llama-server
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.app_process import ROOT  # noqa: E402
from bench.together import released_together  # noqa: E402
from chat.backends.local.model_files import embedded_model_path  # noqa: E402
from chat.backends.local.requantize import cpu_copy  # noqa: E402

TOPICS = ["Rome", "Egypt", "China", "Greece", "the Inca", "Mali", "Persia", "Japan", "Carthage", "Byzantium"]
PROMPT = "Write a long, detailed essay about the history of {}. (Reader {}.)"
N_CTX = 2048  # per conversation


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], ready: str) -> Iterator[None]:
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"did not start: {' '.join(command)}")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def app(port: int, parallel: int, threads: int, data_dir: str) -> contextlib.AbstractContextManager[None]:
    command = [sys.executable, "app.py", "--port", str(port), "--n-ctx", str(N_CTX)]
    command += ["--parallel", str(parallel)] if parallel else []
    env = {
        **os.environ,
        "CHAT_RATE_LIMIT": "0",
        "CHAT_API_TOKEN": "",
        "CHAT_STORE": "off",
        "CHAT_CACHE": "off",
        "CHAT_THREADS": str(threads),
        "CHAT_DATA_DIR": data_dir,
    }
    return process(command, env, f"http://127.0.0.1:{port}/readyz")


def llama_server(
    binary: str, port: int, model: Path, threads: int
) -> contextlib.AbstractContextManager[None]:
    command = [binary, "-m", str(model), "--port", str(port), "--host", "127.0.0.1", "-np", "8"]
    command += ["-c", str(N_CTX * 8), "-t", str(threads), "-tb", str(threads), "--no-webui"]
    return process(command, dict(os.environ), f"http://127.0.0.1:{port}/health")


def app_turn(client: httpx.Client, url: str, text: str, tokens: int) -> tuple[float, float, int]:
    body = {"user_input": text, "stream": True, "context": {"temperature": 0.0, "max_new_tokens": tokens}}
    start = time.perf_counter()
    first, count, event = None, 0, ""
    with client.stream("POST", f"{url}/api/chat", json=body, timeout=600) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "delta":
                first = first or time.perf_counter()
            elif line.startswith("data: ") and event == "done":
                count = json.loads(line[6:])["completion_tokens"]
    return (first or float("nan")) - start, time.perf_counter(), count


def server_turn(client: httpx.Client, url: str, text: str, tokens: int) -> tuple[float, float, int]:
    body = {
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "temperature": 0.0,
        "max_tokens": tokens,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, count = None, 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
            if chunk.get("usage"):
                count = chunk["usage"]["completion_tokens"]
    return (first or float("nan")) - start, time.perf_counter(), count


def round_of(turn, url: str, users: int, tokens: int, tag: int) -> tuple[list[float], float]:  # noqa: ANN001
    """``users`` requests released together: their TTFTs and the total tokens/s."""

    def user(i: int, ready: Callable[[], None]) -> tuple[float, float, int]:
        # each user's client is made before the release: building one loads the CA bundle (tens
        # of ms of CPU), which would otherwise be timed as the server's, for every server alike
        with httpx.Client() as client:
            ready()
            return turn(client, url, PROMPT.format(TOPICS[i % len(TOPICS)], f"{tag}-{i}"), tokens)

    results, start = released_together(users, user)
    end = max(r[1] for r in results)
    return [r[0] for r in results], sum(r[2] for r in results) / (end - start)


def rows(label: str, turn, url: str, args: argparse.Namespace) -> list[str]:  # noqa: ANN001
    with httpx.Client() as client:
        turn(client, url, "Hello.", 8)  # warm: the first request pays for loading and graph setup
    out = []
    for users in args.users:
        ttfts, rates = [], []
        for r in range(args.rounds):
            ttft, rate = round_of(turn, url, users, args.tokens, r)
            ttfts += ttft
            rates.append(rate)
        out.append(
            f"| {label} | {users} | {statistics.median(ttfts) * 1000:.0f} | {max(ttfts) * 1000:.0f} "
            f"| {statistics.median(rates):.1f} |"
        )
        print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="model threads, the same for every server")
    parser.add_argument("--llama-server", default="", help="path of a llama-server binary (skipped if empty)")
    args = parser.parse_args()
    print("| server | users at once | median TTFT ms | worst TTFT ms | total tok/s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as data_dir:
        model = cpu_copy(embedded_model_path(), Path(data_dir) / "embedded-model")
        configs = (("app --parallel 1", 1), ("app (default --parallel: 8)", 0), ("app --parallel 4", 4))
        for port, (label, parallel) in enumerate(configs, start=8790):  # a port each: no wait for the last
            with app(port, parallel, args.threads, data_dir):
                rows(label, app_turn, f"http://127.0.0.1:{port}", args)
        if args.llama_server:
            with llama_server(args.llama_server, 8793, model, args.threads):
                rows("llama-server -np 8", server_turn, "http://127.0.0.1:8793", args)
        else:
            print("| llama-server -np 8 | skipped: no --llama-server given | | | |")


if __name__ == "__main__":
    main()
