"""Knowledge bases on the page, in a real browser: the shop persona answers from the ``shop``
knowledge base with its sources in a collapsed block under the reply (there again when the
conversation is reopened after a reload), and the admin panel uploads, lists and deletes
documents.

Debian's Chromium (Playwright) against the whole app (``build_app`` on uvicorn) with the real
knowledge base in the app's own data folder. The reply is scripted over the session's SmolLM2
(tests/guard_fakes.py ``SpyBackend``: the real tokenizer counts, no prompt is evaluated): the
sources under it are the point, and the test checks they were in the prompt. Screenshots go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from guard_fakes import SpyBackend
from playwright.sync_api import Browser, Page
from support import BOT, INPUT, free_port, open_chat

from chat import ChatEngine, Settings
from chat.backends.local.backend import LlamaCppBackend
from chat.knowledge import KnowledgeBase
from chat.knowledge.context import BEGIN
from chat.server import Server, build_app
from chat.ui import I18N

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
# the titled bubble whose title starts with ``title``: notices are titled bubbles too
SOURCES = "#chatbot .thought-group:has(.title:has-text('{title}'))"
SELECTOR = "#knowledge input"
LIST_ITEMS = "#conversation-list label"
RETURNS_MD = (
    b"# Returns\n\n## Refunds\n\nUnused items can be returned within 30 days of delivery for a full refund.\n"
)
RETURNS_ZH = "# 退货政策\n\n商品在签收后三十天内可以无理由退货，退款五个工作日内原路退回。\n".encode()


REPLY = ["Within ", "30 days. ", "三十天内。"]


@pytest.fixture(scope="module")
def model(local_backend: LlamaCppBackend) -> SpyBackend:
    return SpyBackend(local_backend, reply=REPLY)


@pytest.fixture(scope="module")
def shop_app(
    model: SpyBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, KnowledgeBase]]:
    settings = Settings(port=free_port(), data_dir=str(tmp_path_factory.mktemp("kb-page")))
    app = build_app(ChatEngine({"local": model}), settings)
    library: KnowledgeBase = app.state.knowledge
    library.add_document("shop", "returns.md", RETURNS_MD)  # after the page was built: load finds it
    library.add_document("shop", "退货.md", RETURNS_ZH)
    server = Server(app, host="127.0.0.1", port=settings.port)
    server.start()
    yield server.local_url, library
    server.stop()


def open_page(browser: Browser, url: str, locale: str) -> Page:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    open_chat(page, url)
    return page


def choose(page: Page, dropdown: str, option: str) -> None:
    """Pick ``option`` in the Gradio dropdown whose block has the id ``dropdown``."""
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.parametrize(
    ("locale", "persona", "question", "title", "document"),
    [
        (
            "en-US",
            "Shop customer service (English)",
            "How many days do I have to return an item for a refund?",
            "Sources (",
            "returns.md",
        ),
        ("zh-CN", "商店客服（中文）", "退货要多少天？", "参考来源（", "退货.md"),
    ],
)
def test_the_shop_persona_answers_with_its_sources_collapsed_under_the_reply(
    shop_app: tuple[str, KnowledgeBase],
    model: SpyBackend,
    browser: Browser,
    locale: str,
    persona: str,
    question: str,
    title: str,
    document: str,
) -> None:
    url, _ = shop_app
    page = open_page(browser, url, locale)
    try:
        labels = I18N.translations["zh" if locale.startswith("zh") else "en"]
        page.get_by_label(labels["persona"]).click()
        page.get_by_role("option", name=persona, exact=True).click()
        page.wait_for_function("(sel) => document.querySelector(sel).value === 'shop'", arg=SELECTOR)

        box = page.locator(INPUT)
        box.fill(question)
        box.press("Enter")
        block = page.locator(SOURCES.format(title=title) + " .title")
        block.wait_for(timeout=90_000)
        assert block.inner_text().strip().startswith(title), shot(page, f"knowledge_sources_{locale}")
        assert page.locator(SOURCES.format(title=title) + " .content").count() == 0, (
            "collapsed: the sources are not rendered yet"
        )
        replies = [b.get_attribute("aria-label") for b in page.locator(BOT).all()]
        assert "bot's message: " + "".join(REPLY) in replies, "the reply itself is shown"
        prompt = "\n".join(m.content for m in model.prompts[-1])
        assert BEGIN in prompt and question in prompt  # the model was given the knowledge base's answer
        assert ("30 days" if locale == "en-US" else "三十天") in prompt
        shot(page, f"knowledge_sources_collapsed_{locale}")

        block.click()
        body = page.locator(SOURCES.format(title=title) + " .content")
        body.wait_for()
        assert document in body.inner_text(), shot(page, f"knowledge_sources_opened_{locale}")
        shot(page, f"knowledge_sources_opened_{locale}")

        # the sources are kept with the reply: a reload, reopened from the list, shows them again
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector(INPUT)
        page.locator(LIST_ITEMS, has_text=question).click()
        block = page.locator(SOURCES.format(title=title) + " .title")
        block.wait_for()
        block.click()
        body = page.locator(SOURCES.format(title=title) + " .content")
        body.wait_for()
        assert document in body.inner_text(), shot(page, f"knowledge_sources_reopened_{locale}")
        shot(page, f"knowledge_sources_reopened_{locale}")
    finally:
        page.context.close()


def test_the_admin_panel_uploads_lists_and_deletes(
    shop_app: tuple[str, KnowledgeBase], browser: Browser, tmp_path: Path
) -> None:
    url, library = shop_app
    faq = tmp_path / "faq.md"
    faq.write_text("# Delivery\n\nParcels to Norway take four working days by courier.\n", encoding="utf-8")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really a PDF")
    page = open_page(browser, url, "en-US")
    try:
        page.locator("#knowledge-admin").get_by_text("Knowledge bases (admin)").click()
        target = page.locator("#knowledge-target input")
        target.fill("faq")
        target.press("Enter")
        page.locator("#knowledge-files input[type='file']").set_input_files([str(broken), str(faq)])
        page.locator("#knowledge-upload").click()
        status = page.locator("#knowledge-status")
        status.get_by_text("faq.md: 1 chunks indexed.").wait_for()
        assert "broken.pdf: The file cannot be read" in status.inner_text(), shot(
            page, "knowledge_admin_broken"
        )
        assert [d.name for d in library.list_documents("faq")] == ["faq.md"], "the broken file left nothing"
        page.locator("#knowledge-documents").get_by_text("faq.md").wait_for()
        assert [s.document for s in library.search("faq", "Norway courier")] == ["faq.md"]
        shot(page, "knowledge_admin_uploaded")

        page.locator(SELECTOR).click()  # the new knowledge base is a choice now
        page.get_by_role("option", name="faq", exact=True).wait_for()
        page.keyboard.press("Escape")

        choose(page, "knowledge-document", "faq.md")
        page.locator("#knowledge-delete").click()
        status.get_by_text("Document deleted.").wait_for()
        page.locator("#knowledge-documents").get_by_text("No documents yet.").wait_for()
        assert library.search("faq", "Norway courier") == []
        shot(page, "knowledge_admin_deleted")
    finally:
        page.context.close()
