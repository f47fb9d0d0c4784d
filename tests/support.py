"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from anyio.from_thread import start_blocking_portal

if TYPE_CHECKING:
    from playwright.sync_api import Page

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"  # Debian's (.ci/run installs it), never a downloaded browser
# Chromium keeps only the last --disable-features switch, so ours repeats Playwright's own list
# (1.65's; test_browser_launch checks the pair) before adding what tests never look at: headless
# Chromium builds each new window's omnibox popup, WebUI pages in a renderer of their own, about
# 1.3 CPU-seconds per page opened (a third of loading the chat page itself).
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,HttpsUpgrades,"
    "HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,ThirdPartyStoragePartitioning,"
    "AvoidCorsURLLoaderRestartOnRedirect,TcpPortRandomizationWin,OptimizationHints,"
    "NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch,msForceBrowserSignIn,"
    "msEdgeUpdateLaunchServicesPreferredVersion"
)
NO_BROWSER_UI = "WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup"
# the guide's switches; the benches that measure a page as a user's browser shows it use these alone
HEADLESS_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CHROMIUM_ARGS = [*HEADLESS_ARGS, f"--disable-features={PLAYWRIGHT_DISABLED_FEATURES},{NO_BROWSER_UI}"]

# The chat page's message box and the model's messages in it, for the tests and benches that drive it
INPUT = "#chat-input textarea[data-testid='textbox']"
BOT = "#chatbot [data-testid='bot']"


# Counts the page's direct Gradio calls (events without the queue, one request each): an init
# script, so it wraps fetch before Gradio's client takes it.
CALL_COUNTER = """(() => {
  const fetch = window.fetch;
  let pending = 0, done = 0;
  window.fetch = (...args) => {
    const url = String(args[0] instanceof Request ? args[0].url : args[0]);
    if (!url.includes("/gradio_api/run/")) return fetch(...args);
    pending += 1;
    return fetch(...args).finally(() => { pending -= 1; done += 1; });
  };
  window.__gradioCalls = () => ({ pending, done });
})()"""
# Every load event without the queue has answered (their count is in the page's Gradio config).
LOADED_JS = """() => {
  const loads = (window.gradio_config?.dependencies || []).filter(
    (d) => d.backend_fn && d.queue === false && (d.targets || []).some((t) => t[1] === "load")).length;
  const calls = window.__gradioCalls?.();
  return calls !== undefined && calls.pending === 0 && calls.done >= loads;
}"""


def open_chat(page: Page, url: str) -> None:
    """Open the chat page and wait until it is ready for a user: the message box is there and the
    page's load events have answered. Acting earlier races them: Gradio applies a load event's
    answer over what an earlier send showed (a refusal under the box vanished when it landed)."""
    page.add_init_script(CALL_COUNTER)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(INPUT)
    page.wait_for_function(LOADED_JS)


def answered(page: Page, action: Callable[[], None]) -> None:
    """Do ``action`` on a page opened by ``open_chat`` and wait until the direct Gradio calls it
    made have answered (an accordion that loads its fields: typing before the answer lands is
    overwritten by it)."""
    before = page.evaluate("window.__gradioCalls().done")
    action()
    page.wait_for_function(
        "(n) => { const c = window.__gradioCalls(); return c.done > n && c.pending === 0; }", arg=before
    )


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(stream: AsyncIterator[T]) -> Iterator[T]:
    """An async generator's items (the page's chat handlers), one at a time for sync test code:
    each is awaited on one event loop in a helper thread; the stream is closed at the end."""
    with start_blocking_portal() as portal:
        try:
            while True:
                try:
                    yield portal.call(stream.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            portal.call(stream.aclose)  # type: ignore[attr-defined]
