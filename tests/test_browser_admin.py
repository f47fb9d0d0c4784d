"""The operator page in a real browser (Debian's Chromium) against the session's app: its plots
render from the store, the persona filter changes them, and the page speaks English and Chinese.

The figures are written straight into the app's own store, on days long past, so the page's date
filter shows them alone (tests/admin_seed.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from admin_seed import day, refused, turn
from playwright.sync_api import Browser, Page, expect

from chat.store import Store

pytestmark = pytest.mark.browser

RANGE = "since=2025-01-01&until=2025-01-03"
RATING_LABELS = "svg[data-chart=ratings] text.label"


def seed(data_dir: str) -> None:
    store = Store.open(f"sqlite:///{Path(data_dir) / 'chat.db'}")
    try:
        a, b = store.create_conversation("user:shopper").id, store.create_conversation("user:pupil").id
        turn(
            store,
            "user:shopper",
            a,
            "Where is my order?",
            "On its way.",
            at=day("2025-01-01"),
            persona="shop_support",
            model="m1",
            rating=1,
        )
        turn(
            store,
            "user:shopper",
            a,
            "When?",
            "Soon.",
            at=day("2025-01-02"),
            persona="shop_support",
            model="m1",
            rating=-1,
            ttft_ms=800,
        )
        turn(
            store,
            "user:pupil",
            b,
            "什么是质数？",
            "只能被 1 和自身整除的数。",
            at=day("2025-01-02"),
            persona="tutor",
            model="m2",
            rating=1,
        )
        refused(store, "fraud", at=day("2025-01-02"), persona="shop_support")
    finally:
        store.close()


def rendered(page: Page) -> None:
    for chart in ("messages", "ttft", "refusals", "ratings"):
        expect(page.locator(f"svg[data-chart={chart}]")).to_have_attribute("data-rendered", "1")


def test_plots_render_and_the_persona_filter_changes_them(
    app_url: str, browser: Browser, data_dir: str
) -> None:
    seed(data_dir)
    for locale, heading, likes in (
        ("en-US", "How the assistant does", "Likes"),
        ("zh-CN", "助手运行情况", "赞"),
    ):
        context = browser.new_context(locale=locale)
        page = context.new_page()
        page.goto(f"{app_url.rstrip('/')}/admin?{RANGE}")
        expect(page.locator("h1")).to_have_text(heading)
        rendered(page)
        expect(page.locator(RATING_LABELS)).to_have_count(2)
        expect(page.locator("svg[data-chart=ratings]")).to_contain_text(likes)
        expect(page.locator("svg[data-chart=messages] path.series")).to_have_count(2)
        expect(page.locator("[data-total=messages] b")).to_have_text("4")
        expect(page.locator("#disliked li")).to_have_count(1)
        page.select_option("#persona", "tutor")
        expect(page.locator(RATING_LABELS)).to_have_count(1)
        expect(page.locator(RATING_LABELS)).to_contain_text("tutor")
        expect(page.locator("[data-total=messages] b")).to_have_text("1")
        expect(page.locator("svg[data-chart=refusals] .empty")).to_have_count(1)
        assert "persona=tutor" in page.url
        if locale == "en-US":  # a disliked reply opens its conversation in one click
            page.select_option("#persona", "")
            page.locator("#disliked li button").click()
            expect(page.locator("#conversation li.rated")).to_contain_text("Soon.")
        context.close()
