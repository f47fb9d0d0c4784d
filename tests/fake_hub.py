"""A stand-in for huggingface.co on loopback (the real Hub needs the internet, not available here).

It speaks the few endpoints ``huggingface_hub.snapshot_download`` uses: repo info, the file
tree, and HEAD/GET on ``resolve`` URLs, serving one real GGUF at a throttled rate so that
download progress can be observed. Run: ``python tests/fake_hub.py PORT GGUF_PATH``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = "testorg/tiny-GGUF"
FILENAME = "tiny.Q4_1.gguf"
SHA = "fedcba9876543210fedcba9876543210fedcba98"
CHUNK = 1 << 20


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, gguf: Path, *, bytes_per_second: float = 60e6) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.gguf = gguf
        self.size = gguf.stat().st_size
        self.sha256 = hashlib.sha256(gguf.read_bytes()).hexdigest()
        self.bytes_per_second = bytes_per_second
        self.requests: list[str] = []
        self.gate = threading.Event()  # file bodies wait for it: tests decide when a download ends
        self.gate.set()


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file_headers(self) -> None:
        self.send_response(200)
        self.send_header("X-Repo-Commit", SHA)
        self.send_header("ETag", f'"{self.server.sha256}"')
        self.send_header("Content-Length", str(self.server.size))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()

    def _route(self) -> str | None:
        path = self.path.split("?")[0]
        self.server.requests.append(f"{self.command} {path}")
        if re.fullmatch(rf"/api/models/{REPO}(/revision/[^/]+)?", path):
            return "info"
        if re.fullmatch(rf"/api/models/{REPO}/tree/[^/]+/?", path):
            return "tree"
        if re.fullmatch(rf"/{REPO}/resolve/[^/]+/{re.escape(FILENAME)}", path):
            return "file"
        return None

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        if self._route() == "file":
            self._file_headers()
        else:
            self.send_error(404)

    def do_GET(self) -> None:  # noqa: N802
        route = self._route()
        size = self.server.size
        if route == "info":
            self._json({"id": REPO, "modelId": REPO, "sha": SHA, "siblings": [{"rfilename": FILENAME}]})
        elif route == "tree":
            self._json(
                [
                    {
                        "type": "file",
                        "path": FILENAME,
                        "size": size,
                        "oid": "0" * 40,
                        "lfs": {"oid": self.server.sha256, "size": size, "pointerSize": 134},
                    }
                ]
            )
        elif route == "file":
            self._file_headers()
            with self.server.gguf.open("rb") as f:
                while chunk := f.read(CHUNK):
                    if f.tell() > self.server.size // 2:
                        self.server.gate.wait(60)
                    self.wfile.write(chunk)
                    time.sleep(len(chunk) / self.server.bytes_per_second)
        else:
            self.send_error(404, "Repository not found")


def serve(port: int, gguf: Path, **kwargs: float) -> FakeHub:
    hub = FakeHub(port, gguf, **kwargs)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    return hub


if __name__ == "__main__":
    FakeHub(int(sys.argv[1]), Path(sys.argv[2])).serve_forever()
