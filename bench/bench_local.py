"""Local backend overhead: the app's engine against llama-cpp-python's own streaming call.

Same model object, prompts and settings in one run; every measurement starts from an empty KV
cache (``reset()``), so prompt evaluation is equal work on both sides. The engine is the app's
own (input and output guards on; the cache is bypassed so every reply is generated). Then
``python app.py`` in its own process over HTTP: with gradio_client, and with Gradio's queue
protocol spoken directly (join + SSE, what a browser does), each compared with the app engine's
own time to first token for the same prompt. Prints a Markdown table.

    python bench/bench_local.py [--rounds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from chat import ChatEngine, GenerationParams, Settings, TextDelta  # noqa: E402
from chat.factory import build_local_backend  # noqa: E402
from chat.guards import build_guard  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works, step by step.",
    "请用中文写一段关于春天的短文。",
]

Sample = tuple[float, float | None]  # (time to first token, decode tokens/s)


def measure(stream: Callable[[], Iterator[str]], tokenize: Callable[[str], list[int]]) -> Sample:
    """Both sides' text is tokenized the same way afterwards: the count does not depend on how
    the text was cut into chunks (the output guard may join a few tokens into one delta)."""
    start = time.perf_counter()
    first = None
    pieces = []
    for piece in stream():
        pieces.append(piece)
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    tokens = len(tokenize("".join(pieces)))
    return first - start, (tokens - 1) / (end - first)


def measure_http(rounds: int, params: GenerationParams) -> dict[str, list[float]]:
    """Time to first token through ``python app.py`` in its own process, minus the app engine's
    own figure for the same request (``/api/chat`` reports it), so model time cancels out.
    Greedy decoding makes the engine evaluate every prompt from an empty cache: equal work."""
    from gradio_client import Client
    from support import free_port

    port = free_port()
    env = {**os.environ, "CHAT_CACHE": "false", "CHAT_N_CTX": "2048", "CHAT_FEEDBACK_LOG": ""}
    app = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while "Chat running at" not in (line := app.stderr.readline()):
            if not line:
                raise SystemExit("the app did not start")
        url = f"http://127.0.0.1:{port}/"
        # Plain http:// on loopback: no certificates to verify. With the default ssl_verify=True,
        # gradio_client builds a fresh httpx client for every call and loads the CA bundle
        # each time (about 25 ms here), which is client overhead, not the app's.
        clients = {
            "gradio_client": Client(url, verbose=False, ssl_verify=False),
            "gradio_client, default ssl_verify": Client(url, verbose=False),
        }
        http = httpx.Client(base_url=url, timeout=120)
        fn_index = next(
            d["id"] for d in http.get("/config").json()["dependencies"] if d.get("api_name") == "chat"
        )
        greedy = {"temperature": 0.0, "top_p": params.top_p, "max_new_tokens": params.max_new_tokens}

        def engine_ttft(prompt: str) -> float:
            body = {"user_input": prompt, "context": greedy}
            return http.post("/api/chat", json=body).json()["time_to_first_token"]

        def gradio_client_ttft(prompt: str, client: Client) -> float:
            start = time.perf_counter()
            job = client.submit(message=prompt, api_name="/chat", **greedy)
            next(iter(job))
            ttft = time.perf_counter() - start
            job.result()
            return ttft

        def queue_protocol_ttft(prompt: str) -> float:
            """Gradio's own wire protocol, as a browser speaks it: join the queue, read SSE."""
            session = uuid.uuid4().hex
            data = [prompt, None, "", 0.0, 2048, params.max_new_tokens, params.top_p]
            start = time.perf_counter()
            http.post(
                "/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session}
            )
            ttft = None
            with http.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        msg = json.loads(line[5:]).get("msg")
                        if msg == "process_generating" and ttft is None:
                            ttft = time.perf_counter() - start
                        if msg == "process_completed":
                            break
            return ttft

        for prompt in PROMPTS:  # warm-up
            engine_ttft(prompt), queue_protocol_ttft(prompt)
            for client in clients.values():
                gradio_client_ttft(prompt, client)
        overheads: dict[str, list[float]] = {name: [] for name in [*clients, "queue protocol (browser)"]}
        for _ in range(rounds):
            for prompt in PROMPTS:
                for name, client in clients.items():
                    base = engine_ttft(prompt)
                    overheads[name].append(gradio_client_ttft(prompt, client) - base)
                base = engine_ttft(prompt)
                overheads["queue protocol (browser)"].append(queue_protocol_ttft(prompt) - base)
        for client in clients.values():
            client.close()
        http.close()
        return overheads
    finally:
        app.terminate()
        app.wait(30)


BARE_APP = """
import os, sys, time
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
import gradio as gr

def echo(message: str) -> str:
    time.sleep(0.15)
    yield message

with gr.Blocks() as demo:
    gr.api(echo, api_name="echo")
demo.launch(server_port=int(sys.argv[1]), quiet=True)
"""


def measure_gradio_client_floor(rounds: int) -> list[float]:
    """gradio_client's own overhead: a bare Gradio app whose generator sleeps 150 ms, then yields."""
    from gradio_client import Client
    from support import free_port

    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE_APP, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/config", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the bare Gradio app did not start") from None
                time.sleep(0.2)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, ssl_verify=False)
        overheads = []
        for _ in range(rounds * len(PROMPTS) + 3):
            start = time.perf_counter()
            job = client.submit(message="hi", api_name="/echo")
            next(iter(job))
            overheads.append(time.perf_counter() - start - 0.15)
            job.result()
        client.close()
        return overheads[3:]
    finally:
        bare.terminate()
        bare.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    settings = Settings(n_ctx=2048)
    backend = build_local_backend(settings)
    llm = backend._llm  # the same Llama object for both sides
    guard = build_guard(settings)
    engine = ChatEngine({"local": backend}, input_guard=guard, output_guard=guard)
    params = GenerationParams(temperature=0.7, top_p=0.95, max_new_tokens=args.max_tokens, seed=1234)

    def raw(prompt: str) -> Iterator[object]:
        llm.reset()
        for chunk in llm.create_chat_completion(
            [{"role": "user", "content": prompt}],
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stream=True,
        ):
            if text := chunk["choices"][0]["delta"].get("content"):
                yield text

    def ours(prompt: str) -> Iterator[object]:
        llm.reset()
        for event in engine.stream([{"role": "user", "content": prompt}], params, use_cache=False):
            if isinstance(event, TextDelta):
                yield event.text

    samples: dict[str, list[Sample]] = {"llama-cpp-python": [], "engine": []}
    for prompt in PROMPTS:  # warm-up
        measure(lambda p=prompt: raw(p), backend.tokenize)
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            samples["llama-cpp-python"].append(measure(lambda p=prompt: raw(p), backend.tokenize))
            samples["engine"].append(measure(lambda p=prompt: ours(p), backend.tokenize))

    backend.close()
    http_samples = measure_http(args.rounds, params)
    floor = measure_gradio_client_floor(args.rounds)

    med = statistics.median
    base_ttft = med(s[0] for s in samples["llama-cpp-python"])
    base_tps = med(s[1] for s in samples["llama-cpp-python"])
    print(
        f"SmolLM2-135M Q4_1, {args.rounds} rounds x {len(PROMPTS)} prompts, max {args.max_tokens} new tokens, n_ctx 2048\n"
    )
    print("| path | median TTFT (ms) | median decode tok/s | tok/s ratio | TTFT difference (ms) |")
    print("|---|---|---|---|---|")
    for name in ("llama-cpp-python", "engine"):
        ttft, tps = med(s[0] for s in samples[name]), med(s[1] for s in samples[name])
        print(
            f"| {name} | {ttft * 1000:.1f} | {tps:.1f} | {tps / base_tps:.3f} | {(ttft - base_ttft) * 1000:+.1f} |"
        )
    for name in http_samples:
        overhead = med(http_samples[name])
        print(f"| app over HTTP: {name} | | | | {overhead * 1000:+.1f} vs the app's engine |")
    print(
        f"| bare Gradio app, trivial endpoint: gradio_client | | | | {med(floor) * 1000:+.1f} (the client's own floor) |"
    )
    print(f"\nload average: {os.getloadavg()[0]:.2f}")
    print("Targets: tok/s ratio >= 0.97; engine TTFT difference <= 10 ms; over HTTP <= 60 ms.")


if __name__ == "__main__":
    main()
