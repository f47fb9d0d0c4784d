"""What the benchmarks that go over HTTP share: ``python app.py`` in its own process, as
deployed, and one streamed ``/api/chat`` reply read the way a client reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def launched_app(port: int, *, n_ctx: int, store: bool) -> Iterator[str]:
    """The app on ``port`` (no rate limit, no token; its request log goes nowhere); yields its URL."""
    command = [sys.executable, str(ROOT / "app.py"), "--n-ctx", str(n_ctx), "--port", str(port)]
    env = {**os.environ, "CHAT_RATE_LIMIT": "0", "CHAT_API_TOKEN": "", "CHAT_STORE": "on" if store else "off"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + "readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit("the app did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def sse_turn(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """One ``POST /api/chat`` streamed as SSE: (seconds to the first delta, NaN if none; the done
    frame). The client keeps the app's visitor cookie: stored conversations belong to it."""
    start = time.perf_counter()
    first, done, event = None, {}, ""
    with client.stream("POST", "api/chat", json={**body, "stream": True}, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "delta":
                first = first or time.perf_counter()
            elif line.startswith("data: ") and event == "done":
                done = json.loads(line[6:])
    return (first - start if first is not None else float("nan")), done
