"""The tests' Chromium: Playwright's own settings kept, and no browser UI built for each page.

Headless Chromium (the full browser, not the old headless shell) builds every new window's
omnibox popup, WebUI pages in a renderer of their own that no test looks at; the tests' switches
(``support.CHROMIUM_ARGS``) turn that off. Chromium keeps only the last ``--disable-features``
switch, so ours must repeat the list Playwright passes before it.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Browser

pytestmark = pytest.mark.browser


def disabled_feature_switches(browser: Browser) -> list[set[str]]:
    """Each ``--disable-features`` switch on the running browser's command line, in order."""
    page = browser.new_page()
    try:
        page.goto("chrome://version")
        command_line = page.locator("#command_line").inner_text().split()
    finally:
        page.close()
    prefix = "--disable-features="
    return [set(arg.removeprefix(prefix).split(",")) for arg in command_line if arg.startswith(prefix)]


def test_our_disabled_features_keep_playwrights(browser: Browser) -> None:
    switches = disabled_feature_switches(browser)
    assert len(switches) == 2, switches  # Playwright's, then ours, which Chromium keeps
    playwrights, ours = switches
    assert playwrights <= ours, f"Playwright now also disables {sorted(playwrights - ours)}: add them"
    assert {"WebUIOmniboxPopup", "WebUIOmniboxAimPopup"} <= ours


def test_a_new_page_builds_no_browser_ui(browser: Browser) -> None:
    context = browser.new_context()
    try:
        context.new_page()
        time.sleep(0.5)  # the omnibox popup's pages come just after the window
        cdp = browser.new_browser_cdp_session()
        targets = cdp.send("Target.getTargets", {"filter": [{}]})["targetInfos"]  # {}: every kind
        cdp.detach()
    finally:
        context.close()
    assert [t["url"] for t in targets if t["type"] == "browser_ui"] == []
    assert any(t["type"] == "page" for t in targets), targets  # the filter did list pages
