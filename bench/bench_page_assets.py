"""What a page load costs the server, with Gradio's assets replayed from memory and without.

Builds the app as ``app.py`` does (``build_app`` over ``build_engine``), twice: as shipped, and
with ``chat.service.asset_cache.AssetCache`` taken out. Each is served by uvicorn in this process;
Debian's Chromium (Playwright) opens the page in a fresh browser context, as a new visitor, until
the chat is ready. Measured: the server's CPU time per page load (this process: the browser runs
in its own), the whole load's wall time, and the part of the server's CPU spent on the 85 asset
requests, replayed by ``httpx`` from a second process.

Both apps share the machine's cores with Chromium; compare rows, not machines.
Prints a Markdown table.

    python bench/bench_page_assets.py [--loads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from playwright.sync_api import Browser, sync_playwright  # noqa: E402
from support import CHROMIUM, HEADLESS_ARGS, free_port  # noqa: E402

from chat import Settings, factory  # noqa: E402
from chat.server import Server, build_app  # noqa: E402
from chat.service.asset_cache import AssetCache  # noqa: E402

READY = "[data-testid='dataset-cell-0-0'], #chatbot .placeholder"
FETCH_ALL = (  # each asset request again, with the browser's Accept-Encoding and Origin
    "import httpx, json, sys\n"
    "client = httpx.Client()\n"
    "for url, headers in json.loads(sys.argv[1]):\n"
    "    assert client.get(url, headers=headers).status_code == 200, url\n"
)
KEPT_HEADERS = ("accept-encoding", "origin")


def page_load(
    browser: Browser, url: str, seen: list[tuple[str, dict[str, str]]] | None = None
) -> tuple[float, float]:
    """(server CPU seconds, wall seconds) for one new visitor's page load."""
    cpu, wall = time.process_time(), time.perf_counter()
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    requests = []
    if seen is not None:
        page.on(
            "request", lambda r: requests.append(r) if "/assets/" in r.url or "/static/" in r.url else None
        )
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(READY)
    result = time.process_time() - cpu, time.perf_counter() - wall
    if seen is not None:  # the headers the network sent (``headers`` leaves some out)
        seen += [(r.url, r.all_headers()) for r in requests]
    context.close()
    return result


def measure(browser: Browser, cached: bool, loads: int) -> dict[str, float]:
    settings = Settings(port=free_port(), store=False)
    app = build_app(factory.build_engine(settings), settings)
    if not cached:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not AssetCache]
    server = Server(app, host="127.0.0.1", port=settings.port)
    server.start()
    try:
        assets: list[tuple[str, dict[str, str]]] = []
        page_load(browser, server.local_url, assets)  # the first visitor fills the cache
        samples = [page_load(browser, server.local_url) for _ in range(loads)]
        cpu = time.process_time()
        requests = [(u, {k: v for k, v in h.items() if k in KEPT_HEADERS}) for u, h in assets]
        subprocess.run([sys.executable, "-c", FETCH_ALL, json.dumps(requests)], check=True)
        cpu = time.process_time() - cpu
    finally:
        server.stop()
    return {
        "server_cpu": statistics.median(s[0] for s in samples),
        "wall": statistics.median(s[1] for s in samples),
        "assets": len(assets),
        "assets_cpu": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=8, help="page loads per app (after a first)")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=HEADLESS_ARGS)
        rows = {
            name: measure(browser, cached, args.loads)
            for name, cached in (("as shipped", True), ("without AssetCache", False))
        }
        browser.close()
    print(f"Page loads by a new visitor, median of {args.loads} (Chromium, fresh context each)\n")
    print("| app | server CPU per page load | page ready (wall) | server CPU for the assets |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['server_cpu'] * 1000:.0f} ms | {row['wall'] * 1000:.0f} ms | "
            f"{row['assets_cpu'] * 1000:.0f} ms for {row['assets']:.0f} files |"
        )


if __name__ == "__main__":
    main()
