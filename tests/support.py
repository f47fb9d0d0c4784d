"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from anyio.from_thread import start_blocking_portal

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
