"""What the browser tests pay per page: Chromium's CPU for a new page, a load of the app's page and
a chat turn on it, with the tests' Chromium switches and with Playwright's alone.

Headless Chromium (the full browser) builds every new window's omnibox popup, WebUI pages in a
renderer of their own; the tests turn that off (tests/support.py, ``NO_BROWSER_UI``). The app is
``build_app`` (store off) over a scripted two-word reply: the point is the browser, not the model.
CPU is the whole machine's busy time (every process: Chromium's, Playwright's, the app's), so run
it on an otherwise idle machine. Rows alternate, so the machine's drift falls on both.

    python bench/bench_browser_pages.py [--rounds 2] [--pages 4] [--turns 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from chat.gradio_stubs import skip_stub_regeneration  # noqa: E402

skip_stub_regeneration()

from guard_fakes import ScriptedBackend  # noqa: E402
from playwright.sync_api import Browser, sync_playwright  # noqa: E402
from support import BOT, CHROMIUM, CHROMIUM_ARGS, HEADLESS_ARGS, INPUT, free_port  # noqa: E402

from chat import ChatEngine, Settings  # noqa: E402
from chat.server import Server, build_app  # noqa: E402

IDLE = "() => document.querySelector('#chat-input button.stop-button') === null"
VARIANTS = {
    "tests' switches": CHROMIUM_ARGS,
    "Playwright's alone": HEADLESS_ARGS,
}


def busy() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


def measure(browser: Browser, url: str, pages: int, turns: int) -> tuple[float, float, float]:
    """CPU seconds per blank page, per load of the app's page and per chat turn on it."""
    blank = load = turn = 0.0
    for _ in range(pages):
        start = busy()
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        time.sleep(1.0)  # the window's own pages, if any, come just after it
        opened = busy()
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#chatbot .placeholder")
        time.sleep(0.5)
        loaded = busy()
        for n in range(turns):
            page.locator(INPUT).fill(f"Hello {n}")
            page.locator(INPUT).press("Enter")
            page.wait_for_function(f"document.querySelectorAll(`{BOT}`).length === {n + 1}", polling=100)
            page.wait_for_function(IDLE, polling=100)
            time.sleep(0.5)  # the turn's last events land
        blank, load, turn = blank + opened - start, load + loaded - opened, turn + busy() - loaded
        context.close()
    return blank / pages, load / pages, turn / (pages * turns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()

    settings = Settings(port=free_port(), store=False)
    engine = ChatEngine({"local": ScriptedBackend(["Hello there."])})
    server = Server(build_app(engine, settings), host="127.0.0.1", port=settings.port)
    server.start()
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
    try:
        with sync_playwright() as playwright:
            for _ in range(args.rounds):
                for name, switches in VARIANTS.items():
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=switches)
                    # warm-up: Chromium's first window, the page's first load
                    measure(browser, server.local_url, 1, 1)
                    results[name].append(measure(browser, server.local_url, args.pages, args.turns))
                    browser.close()
    finally:
        server.stop()

    print(f"{args.rounds} rounds x {args.pages} pages x {args.turns} turns; CPU seconds, median of rounds\n")
    print("| Chromium | new blank page (1 s) | load of the chat page | chat turn (scripted reply) |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        blank, load, turn = (statistics.median(column) for column in zip(*rows, strict=True))
        print(f"| {name} | {blank:.2f} | {load:.2f} | {turn:.2f} |")


if __name__ == "__main__":
    main()
