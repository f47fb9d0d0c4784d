"""Does the page keep up with a streamed reply, on a desktop and on a phone-class CPU?

The app (``build_app``, store off) over a backend that streams a reply at a model's pace (words
``--interval`` seconds apart: the point is the page, not the model). Debian's Chromium opens the
page, sends a message and waits until the whole reply is shown. For each pace of frames (as
shipped, ``chat.ui.handlers.frame_seconds``: slower as the conversation grows; or a fixed least
time between two frames) and each CPU
(Chromium's own throttling: 1x, and 4x as Lighthouse does for a mid-range phone), it measures:

- frames: how many times the reply grew on the page;
- page CPU: the page's renderer process for the whole turn;
- lag: from the server's last word to the page showing it (a page that cannot render frames as
  fast as they come falls behind, and the lag grows with the reply).

Each row is measured on a new chat and on one that already holds ``--history`` turns (imported
through the page's Import button, each reply about 150 words): a frame costs the page more as the
conversation grows.

Prints a Markdown table. Rows alternate, so the machine's drift falls on all of them.

    python bench/bench_stream_frames.py [--words 200] [--interval 0.016] [--history 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from chat.gradio_stubs import skip_stub_regeneration  # noqa: E402

skip_stub_regeneration()

import psutil  # noqa: E402
from guard_fakes import ScriptedBackend  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402
from support import BOT, CHROMIUM, HEADLESS_ARGS, INPUT, free_port  # noqa: E402

import chat.ui.handlers  # noqa: E402
from chat import ChatEngine, Settings  # noqa: E402
from chat.backends.base import Chunk  # noqa: E402
from chat.messages import GenerationParams, Message  # noqa: E402
from chat.server import Server, build_app  # noqa: E402

IMPORT_INPUT = "input[type='file'][accept='.json']"
PAST_REPLY = " ".join(
    ["Here is **what I found** about that:"]
    + [f"point {n} of the answer, with some detail." for n in range(20)]
)  # about 150 words
FRAME_PACES = (None, 0.05, 0.1, 0.2)  # None: as shipped
SHIPPED = (chat.ui.handlers.FRAME_SECONDS, chat.ui.handlers.FRAME_SECONDS_MAX)
THROTTLES = (1, 4)


class PacedBackend(ScriptedBackend):
    """Streams ``words`` numbered words (the page's text shows how far it got) ``interval``
    seconds apart; records when the last one left."""

    def __init__(self, words: int, interval: float) -> None:
        super().__init__([f"w{n} " for n in range(words)])
        self.interval = interval
        self.last_sent = 0.0

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        for chunk in super().stream(messages, params, cancel=cancel, api_key=api_key):
            if isinstance(chunk, str):
                time.sleep(self.interval)
            else:
                self.last_sent = time.monotonic()
            yield chunk


def renderer_cpu() -> float:
    """CPU seconds of every Chromium renderer process (the page's, and any other)."""
    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            if "--type=renderer" in " ".join(proc.cmdline()):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            pass
    return total


def import_history(page: Page, turns: int, folder: Path) -> None:
    """Load a conversation of ``turns`` past turns into the page, as a user's Import does."""
    messages: list[dict[str, str]] = []
    for n in range(turns):
        messages += [
            {"role": "user", "content": f"Question {n}?"},
            {"role": "assistant", "content": PAST_REPLY},
        ]
    path = folder / f"history-{turns}.json"
    path.write_text(json.dumps({"version": 1, "messages": messages}), "utf-8")
    page.locator("#sidebar .toggle-button").click()  # the Import button is in the sidebar's
    page.locator("button.label-wrap", has_text="Conversation").click()  # "Conversation" panel
    page.locator(IMPORT_INPUT).set_input_files(str(path))
    page.locator("#sidebar .toggle-button").click()
    page.wait_for_function(f'document.querySelectorAll("{BOT}").length === {turns}', timeout=60_000)


def one_turn(page: Page, backend: PacedBackend) -> tuple[int, float, float]:
    """Frames, page CPU and lag of the streamed reply to the page's next message."""
    last = backend.chunks[-1].strip()
    before = page.locator(BOT).count()
    page.evaluate(
        """() => { window.__frames = 0;
            window.__observer?.disconnect();
            window.__observer = new MutationObserver(() => { window.__frames += 1; });
            window.__observer.observe(document.querySelector('#chatbot'),
                {subtree: true, childList: true, characterData: true}); }"""
    )
    cpu = renderer_cpu()
    page.locator(INPUT).fill("Tell me a story.")
    page.locator(INPUT).press("Enter")
    page.wait_for_function(
        f"""() => {{ const bots = document.querySelectorAll("{BOT}");
            return bots.length > {before} && bots[bots.length - 1].innerText.includes("{last}"); }}""",
        timeout=180_000,
        polling=10,
    )
    shown = time.monotonic()
    frames = page.evaluate("window.__frames")
    time.sleep(0.5)  # the turn's last events (stats, the conversation list) land
    return frames, renderer_cpu() - cpu, shown - backend.last_sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1 / 60, help="seconds between words")
    parser.add_argument("--history", type=int, default=30, help="past turns in the longer chat")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    backend = PacedBackend(args.words, args.interval)
    settings = Settings(port=free_port(), store=False)
    server = Server(build_app(ChatEngine({"local": backend}), settings), host="127.0.0.1", port=settings.port)
    server.start()
    results: dict[tuple[int, int, float], list[tuple[int, float, float]]] = {}
    folder = Path(tempfile.mkdtemp())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=HEADLESS_ARGS)
            for _ in range(args.rounds):
                for history in (0, args.history):
                    for throttle in THROTTLES:
                        for pace in FRAME_PACES:
                            least, most = SHIPPED if pace is None else (pace, pace)
                            chat.ui.handlers.FRAME_SECONDS, chat.ui.handlers.FRAME_SECONDS_MAX = least, most
                            context = browser.new_context(viewport={"width": 390, "height": 844})
                            page = context.new_page()
                            page.goto(server.local_url, wait_until="domcontentloaded")
                            page.wait_for_selector(INPUT)
                            if history:
                                import_history(page, history, folder)
                            context.new_cdp_session(page).send(
                                "Emulation.setCPUThrottlingRate", {"rate": throttle}
                            )
                            results.setdefault((history, throttle, pace), []).append(one_turn(page, backend))
                            context.close()
            browser.close()
    finally:
        server.stop()

    seconds = args.words * args.interval
    print(f"{args.words} words, one every {args.interval * 1000:.0f} ms ({seconds:.1f} s of reply); ")
    print(f"390x844 page, median of {args.rounds} turns per row\n")
    print("| chat | CPU | frames at most every | frames seen | page CPU (s) | lag after the last word (s) |")
    print("|---|---|---:|---:|---:|---:|")
    for (history, throttle, pace), runs in results.items():
        frames = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        lag = statistics.median(r[2] for r in runs)
        label = "desktop (1x)" if throttle == 1 else f"phone-class ({throttle}x slower)"
        chat_label = f"{history} turns before" if history else "new"
        paced = "as shipped" if pace is None else f"{pace:.2f} s"
        print(f"| {chat_label} | {label} | {paced} | {frames:.0f} | {cpu:.2f} | {lag:.2f} |")


if __name__ == "__main__":
    main()
