"""A reasoning model's thinking in the real browser: a collapsed "Thinking" block before the reply.

Debian's Chromium (Playwright) against the whole app (``build_app`` on uvicorn). SmolLM2 does not
think, so the model is the scripted ``Thinker`` of ``test_reasoning.py``: it streams a ``<think>``
block cut across chunks, then the answer, and records what each request sent it. Screenshots go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from support import BOT, INPUT, free_port, open_chat
from test_reasoning import ANSWER, CHUNKS, THOUGHT, Thinker

from chat import ChatEngine, Message, Settings
from chat.server import Server, build_app

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
THOUGHT_TITLE = "#chatbot .thought-group .title"
THOUGHT_BODY = "#chatbot .thought-group .content"
# Opened and done sliding open: the body shows the thinking at its full height.
OPENED_JS = f"""(text) => {{
    const body = document.querySelector("{THOUGHT_BODY}");
    if (!body || !body.innerText.includes(text)) return false;
    const height = body.getBoundingClientRect().height;
    return height > 0 && height >= body.scrollHeight - 1;
}}"""


@pytest.fixture(scope="module")
def thinker_app() -> Iterator[tuple[str, Thinker]]:
    backend = Thinker(CHUNKS)
    settings = Settings(port=free_port())
    server = Server(build_app(ChatEngine({"local": backend}), settings), host="127.0.0.1", port=settings.port)
    server.start()
    yield server.local_url, backend
    server.stop()


@pytest.mark.parametrize(
    ("locale", "question", "title"),
    [("en-US", "Capital of France?", "Thinking"), ("zh-CN", "法国的首都是哪里？", "思考过程")],
)
def test_thinking_shows_collapsed_before_the_reply_and_is_not_sent_back(
    thinker_app: tuple[str, Thinker], browser: Browser, locale: str, question: str, title: str
) -> None:
    url, backend = thinker_app
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        open_chat(page, url)
        box = page.locator(INPUT)
        box.fill(question)
        box.press("Enter")
        page.locator(f'{BOT}[aria-label="bot\'s message: {ANSWER}"]').wait_for()

        block = page.locator(THOUGHT_TITLE)
        assert block.inner_text().strip() == title
        assert page.locator(THOUGHT_BODY).count() == 0  # collapsed: the thinking is not even rendered
        assert THOUGHT not in page.locator("#chatbot").inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"reasoning_collapsed_{locale}.png"), full_page=True)

        block.click()  # the user opens it
        page.wait_for_function(OPENED_JS, arg=THOUGHT)
        page.screenshot(path=str(SCREENSHOTS / f"reasoning_opened_{locale}.png"), full_page=True)

        calls = backend.calls
        box.fill("And Spain?")
        box.press("Enter")
        page.wait_for_function(f"document.querySelectorAll(`{THOUGHT_TITLE}`).length === 2")
        assert backend.calls == calls + 1
        sent = backend.seen[-1]
        assert Message("assistant", ANSWER) in sent  # the reply went back as context...
        assert all(
            THOUGHT not in m.content and "think>" not in m.content for m in sent
        )  # ...its thinking not
    finally:
        context.close()
