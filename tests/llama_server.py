"""``python -m llama_cpp.server`` on the embedded GGUF, on a loopback port: the real
OpenAI-compatible server the cloud backend, the guard model and the embedder are tested against."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from support import free_port

from chat.backends.local.model_files import embedded_model_path


@contextmanager
def llama_cpp_server(alias: str, api_key: str, *options: str, timeout: float = 90) -> Iterator[str]:
    """The server's ``/v1`` base URL while it runs; ``options`` are extra server flags."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(embedded_model_path()),
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--api_key", api_key,
        *options,
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    # A file, not a pipe: llama.cpp's load log would fill a pipe and block the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"llama_cpp.server exited: {log.read()[-2000:]}")
                try:
                    auth = {"Authorization": f"Bearer {api_key}"}
                    if httpx.get(base + "/models", headers=auth, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not answer /v1/models within {timeout:g} s")
                time.sleep(0.25)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
