"""The page as a user first sees it, in a real Chromium: a phone (390x844) and a desktop
(1440x900), in a Chinese and an English browser, with a branded deployment and the conversation
store on.

Each case opens the page and checks the first screen (title, logo, welcome text, the persona's
example prompts in the browser's language, footer, and the chat input without scrolling), clicks
an example and watches its reply stream in within the screen, reads the conversation list (its
title fits the sidebar) and the REST API shows the same stored conversation. On a phone in
Chinese and a desktop in English (each device and each language once) it also reloads (the list
and the messages are still there) and opens a second visitor who sees none of it and whose long
first message titles the list in two lines.
On a desktop the persona (and its examples) can be switched. A logged-in user finds on a second
device (another browser context) what the first one wrote.

The backend is scripted (tests/guard_fakes.py), and holds its last chunk until the page has been
seen streaming: the model is not the point here. Screenshots go to
artifacts/screenshots/layout-*.png, and each failing assertion names its screenshot.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from guard_fakes import ScriptedBackend
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from support import BOT, free_port, open_chat

from chat import ChatEngine, Settings
from chat.backends.base import Chunk
from chat.messages import GenerationParams, Message
from chat.reply.personas import load_persona_list
from chat.server import Server, build_app
from chat.ui import I18N
from chat.ui.branding import primary_hue
from chat.ui.layout import default_persona

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
VIEWPORTS = {"phone": (390, 844), "desktop": (1440, 900)}

TITLE = "Acme Help"
WELCOME = "Welcome to Acme support. 欢迎来到 Acme。"
FOOTER = "Acme answers can be wrong; check your order page."
COLOR = "#0a7f5a"
# A 1x1 PNG: the logo is inlined into the page as a data: URL.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5f6e6a40000000049454e44ae426082"
)
CHUNKS = ["Your ", "order ", "ships ", "today. ", "您的订单", "今天发货。"]
REPLY = "".join(CHUNKS)

INPUT = "#chat-input textarea"
STOP = "#chat-input button.stop-button"
USER = "#chatbot [data-testid='user']"
EXAMPLES = "#chatbot .examples button.example"
LIST_ITEMS = "#conversation-list label"
LONG = {  # a first message longer than a title: the list shows two lines of it, not five
    "zh": "请帮我详细比较一下三种不同的退货方式各自的优点和缺点，并告诉我哪一种最适合经常在网上购物的学生使用，谢谢",
    "en": "Please compare in detail the three different ways to return an item, and tell me which one suits "
    "a student who often shops online best",
}


class SlowScripted(ScriptedBackend):
    """The scripted reply, a chunk every 0.05 s. While ``gate`` is set and not open, the last
    chunk waits for it (30 s at most): the page is seen mid-stream however busy the machine is."""

    gate: threading.Event | None = None

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        for chunk in super().stream(messages, params, cancel=cancel, api_key=api_key):
            time.sleep(0.05)
            if chunk == self.chunks[-1] and self.gate is not None:
                self.gate.wait(30)
            yield chunk


@dataclass
class App:
    url: str
    server: Server
    backend: SlowScripted


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    folder = tmp_path_factory.mktemp("layout")
    (folder / "logo.png").write_bytes(PNG)
    settings = Settings(
        n_ctx=2048,
        port=free_port(),
        data_dir=str(folder / "data"),
        title=TITLE,
        description=WELCOME,
        footer=FOOTER,
        logo=str(folder / "logo.png"),
        primary_color=COLOR,
        feedback_log="",
    )
    backend = SlowScripted(CHUNKS)
    server = Server(build_app(ChatEngine({"local": backend}), settings), "127.0.0.1", settings.port)
    server.start()
    yield App(server.local_url, server, backend)
    server.stop()


class Shots:
    """Screenshots of one case; ``path`` names the latest for assertion messages."""

    def __init__(self, case: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.case, self.path = case, ""

    def take(self, page: Page, step: str) -> str:
        self.path = str(SCREENSHOTS / f"layout-{self.case}-{step}.png")
        page.screenshot(path=self.path)  # the viewport only: what the user sees without scrolling
        return self.path


def open_page(context: BrowserContext, url: str, first_example: str) -> Page:
    """Open the page and wait for its load event (the persona's examples, the list) to land."""
    page = context.new_page()
    open_chat(page, url)
    wait_for_examples(page, first_example)
    return page


def wait_for_examples(page: Page, first: str) -> None:
    """Until the chat's first example is ``first``: the load event set the persona it comes from."""
    page.wait_for_function(
        "(first) => document.querySelector('#chatbot .examples .example-text')?.innerText === first",
        arg=first,
    )


def brand_shades() -> set[str]:
    """The configured colour's shades as the browser reports them (the theme picks which one a
    button uses)."""
    hue = primary_hue(COLOR)
    hexes = [getattr(hue, name) for name in ("c400", "c500", "c600", "c700", "c800")]
    return {"rgb({}, {}, {})".format(*(int(h[i : i + 2], 16) for i in (1, 3, 5))) for h in hexes}


def settled_background(page: Page, selector: str, expected: set[str]) -> str:
    """The element's background colour once it is one of ``expected``, or after 5 s whatever it
    is: a button's background is a CSS transition, and a read mid-way gives a colour in between
    (a clean CI run once read rgb(7, 91, 64) between two shades)."""
    read = f"getComputedStyle(document.querySelector({selector!r})).backgroundColor"
    with contextlib.suppress(PlaywrightTimeoutError):
        page.wait_for_function(
            f"(expected) => expected.includes({read})", arg=sorted(expected), timeout=5_000
        )
    return page.evaluate(read)


def in_first_screen(page: Page, selector: str) -> bool:
    """The element is wholly inside the viewport with the page not scrolled."""
    return page.evaluate(
        """(sel) => {
            const r = document.querySelector(sel).getBoundingClientRect();
            return window.scrollY === 0 && r.top >= 0 && r.left >= 0 && r.height > 0
                && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
        }""",
        selector,
    )


def title_fits(item: Locator) -> dict[str, float | bool]:
    """How a list entry's title sits in the sidebar: its lines, inside it, not cut sideways."""
    return item.evaluate(
        """(label) => {
            const text = label.querySelector('span') || label;
            const lines = text.getBoundingClientRect().height / parseFloat(getComputedStyle(text).lineHeight);
            const side = document.querySelector('#sidebar').getBoundingClientRect();
            const r = label.getBoundingClientRect();
            return {lines, inside: r.left >= side.left && r.right <= side.right + 1,
                    clipped: text.scrollWidth > text.clientWidth + 1};
        }"""
    )


def sidebar_open(page: Page) -> bool:
    return page.evaluate("() => document.querySelector('#sidebar').classList.contains('open')")


def show_list(page: Page, phone: bool) -> None:
    """On a phone the list is one tap away (the sidebar starts closed there)."""
    if phone and not sidebar_open(page):
        page.locator("#sidebar .toggle-button").click()
    page.wait_for_function("() => document.querySelector('#sidebar').classList.contains('open')")


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
@pytest.mark.parametrize("device", list(VIEWPORTS))
def test_first_screen_example_reply_list_and_reload(
    app: App, browser: Browser, device: str, locale: str
) -> None:
    width, height = VIEWPORTS[device]
    phone = device == "phone"
    lang = "zh" if locale.startswith("zh") else "en"
    persona = default_persona(load_persona_list(), lang)
    assert persona is not None and persona.examples
    shots = Shots(f"{device}-{locale}")
    context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    stranger = browser.new_context(locale=locale, viewport={"width": width, "height": height})
    try:
        # -- the first screen: branded, the persona of the browser's language, chat first
        page = open_page(context, app.url, persona.examples[0])
        shots.take(page, "1-first-screen")
        assert page.title() == TITLE, shots.path
        assert page.locator("#brand h1").inner_text().strip() == TITLE, shots.path
        assert page.locator("#brand img.brand-logo").get_attribute("src").startswith("data:image/png;base64,")
        assert page.locator("#chatbot .placeholder").inner_text().strip() == WELCOME, shots.path
        assert page.locator(EXAMPLES).all_inner_texts() == list(persona.examples), shots.path
        assert page.locator("#footer").inner_text().strip() == FOOTER, shots.path
        accent = settled_background(page, "#new-chat", brand_shades())
        assert accent in brand_shades(), f"{accent} is not a shade of {COLOR}: {shots.path}"
        assert in_first_screen(page, INPUT), f"the chat input is below the fold: {shots.path}"
        assert in_first_screen(page, "#chatbot .examples"), shots.path
        assert in_first_screen(page, "#footer"), f"the disclaimer is below the fold: {shots.path}"
        assert sidebar_open(page) is not phone, f"the sidebar should start {'closed' if phone else 'open'}"
        if not phone:  # the list is a sidebar beside the chat, not a column above it
            sidebar = page.locator("#sidebar").bounding_box()
            chat = page.locator("#chatbot").bounding_box()
            assert sidebar["width"] >= 280 and chat["x"] >= sidebar["x"] + sidebar["width"], shots.path
            # the user can switch persona (and language): the examples follow, and come back
            other = default_persona(load_persona_list(), "en" if lang == "zh" else "zh")
            for chosen in (other, persona):
                page.get_by_label(I18N.translations[lang]["persona"]).click()
                page.get_by_role("option", name=chosen.title).click()
                page.locator(EXAMPLES).first.filter(has_text=chosen.examples[0]).wait_for()
                assert page.locator(EXAMPLES).all_inner_texts() == list(chosen.examples), shots.path

        # -- an example is sent, and its reply streams in within the screen
        app.backend.gate = threading.Event()  # the last chunk waits until the page is seen
        page.locator(EXAMPLES).first.click()
        page.wait_for_selector(STOP)  # still streaming
        page.locator(BOT, has_text=CHUNKS[0].strip()).first.wait_for()
        streaming = shots.take(page, "2-streaming")
        assert page.locator(STOP).count() == 1, "the reply ended before it could be seen streaming"
        assert in_first_screen(page, BOT), (
            f"the streaming reply is not visible without scrolling: {streaming}"
        )
        app.backend.gate.set()
        page.wait_for_function(
            "([sel, text]) => [...document.querySelectorAll(sel)].some(e => e.innerText.trim() === text)",
            arg=[BOT, REPLY],
        )
        page.wait_for_selector(STOP, state="detached")
        shots.take(page, "3-reply")
        assert page.locator(USER).all_inner_texts() == [persona.examples[0]], shots.path
        assert in_first_screen(page, INPUT), shots.path

        # -- the list shows it, on one or two readable lines
        show_list(page, phone)
        item = page.locator(LIST_ITEMS, has_text=persona.examples[0])
        item.wait_for()
        shots.take(page, "4-list")
        fits = title_fits(item)
        assert fits["lines"] <= 2.2 and fits["inside"] and not fits["clipped"], f"{fits}: {shots.path}"

        # -- the server kept it: the REST API of the same visitor sees the same conversation
        listed = page.request.get(app.url + "api/conversations").json()["conversations"]
        assert [c["title"] for c in listed] == [persona.examples[0]]
        stored = page.request.get(app.url + f"api/conversations/{listed[0]['id']}").json()
        assert [(m["role"], m["content"], m["status"]) for m in stored["messages"]] == [
            ("user", persona.examples[0], "complete"),
            ("assistant", REPLY, "complete"),
        ]

        if (device == "phone") != (lang == "zh"):
            return  # a reload and another visitor: once per device and once per language is enough
        # -- a reload comes back to the open conversation, every message shown, marked in the list
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector(INPUT)
        page.wait_for_function(
            "([sel, text]) => [...document.querySelectorAll(sel)].some(e => e.innerText.trim() === text)",
            arg=[BOT, REPLY],
        )
        shots.take(page, "5-reloaded")
        assert page.locator(USER).all_inner_texts() == [persona.examples[0]], shots.path
        assert in_first_screen(page, BOT), shots.path
        show_list(page, phone)
        assert page.locator("#conversation-list input:checked").count() == 1, shots.take(page, "5-list")

        # -- another visitor sees none of it
        other = open_page(stranger, app.url, persona.examples[0])
        show_list(other, phone)
        shots.take(other, "6-stranger")
        assert other.locator(LIST_ITEMS).count() == 0, shots.path
        assert other.request.get(app.url + "api/conversations").json()["conversations"] == []
        other.locator(INPUT).fill(LONG[lang])
        other.locator(INPUT).press("Enter")
        item = other.locator(LIST_ITEMS).first
        item.wait_for()
        fits = title_fits(item)
        path = shots.take(other, "7-long-title")
        assert fits["lines"] <= 2.2 and fits["inside"] and not fits["clipped"], f"{fits}: {path}"
    finally:
        context.close()
        stranger.close()


# Gradio's loading overlay (spinner, timer, fading) inside the blocks ``selector`` names, as shown
LOADING_OVERLAYS = """(selector) => [...document.querySelectorAll(selector)]
    .flatMap(block => [...block.querySelectorAll("[data-testid='status-tracker']")])
    .filter(t => getComputedStyle(t).opacity !== "0" && t.getBoundingClientRect().height > 0)
    .map(t => t.closest("[id]").id + ": " + t.innerText)"""


def test_a_phone_visitor_who_opens_the_list_before_the_page_has_loaded_keeps_it_open(
    app: App, browser: Browser
) -> None:
    """The page's load event opens the list on a wide screen only. It used to close it on a
    phone, under the finger of a visitor who had just opened it. The load event's answers are
    held until the visitor has opened the list. Meanwhile the header and footer, which the load
    event fills in the reader's language, show no spinner and timer (they did, faded, on a slow
    first load)."""
    width, height = VIEWPORTS["phone"]
    context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    held: list[Route] = []
    try:
        page = context.new_page()
        holding = True

        def hold(route: Route) -> None:
            if holding:
                held.append(route)
            else:
                route.continue_()

        page.route("**/gradio_api/run/predict", hold)
        page.goto(app.url, wait_until="domcontentloaded")
        page.wait_for_selector(INPUT)
        deadline = time.monotonic() + 30
        while not held:
            assert time.monotonic() < deadline, "the page sent no load event"
            page.wait_for_timeout(20)
        assert not sidebar_open(page)
        shown = page.evaluate(LOADING_OVERLAYS, "#brand, #footer")
        assert shown == [], Shots("phone-early-list").take(page, "loading")
        page.locator("#sidebar .toggle-button").click()
        page.wait_for_function("() => document.querySelector('#sidebar').classList.contains('open')")
        holding = False
        for route in held:
            route.continue_()
        persona = default_persona(load_persona_list(), "zh")
        assert persona is not None
        wait_for_examples(page, persona.examples[0])  # the load event has landed
        assert sidebar_open(page), Shots("phone-early-list").take(page, "after-load")
    finally:
        context.close()


def test_a_logged_in_user_finds_the_conversation_on_another_device(browser: Browser, tmp_path: Path) -> None:
    """Two browser contexts are two devices: logged in as the same user, the second lists and
    opens what the first one wrote."""
    settings = Settings(
        n_ctx=2048, port=free_port(), data_dir=str(tmp_path), auth="ana:secret-pass", feedback_log=""
    )
    server = Server(
        build_app(ChatEngine({"local": SlowScripted(CHUNKS)}), settings), "127.0.0.1", settings.port
    )
    server.start()
    persona = default_persona(load_persona_list(), "en")
    assert persona is not None
    devices = [browser.new_context(locale="en-US", viewport={"width": 1440, "height": 900}) for _ in range(2)]
    try:
        for device in devices:
            device.set_default_timeout(30_000)
            assert device.request.post(
                server.local_url + "login", form={"username": "ana", "password": "secret-pass"}
            ).ok
        laptop = open_page(devices[0], server.local_url, persona.examples[0])
        laptop.locator(EXAMPLES).nth(1).click()
        laptop.locator(LIST_ITEMS, has_text=persona.examples[1]).wait_for()
        laptop.wait_for_selector(STOP, state="detached")

        phone = open_page(devices[1], server.local_url, persona.examples[0])  # logged in, opened later
        phone.locator(LIST_ITEMS, has_text=persona.examples[1]).click()
        phone.wait_for_function(
            "([sel, text]) => [...document.querySelectorAll(sel)].some(e => e.innerText.trim() === text)",
            arg=[BOT, REPLY],
        )
        path = Shots("login-second-device").take(phone, "opened")
        assert phone.locator(USER).all_inner_texts() == [persona.examples[1]], path
    finally:
        for device in devices:
            device.close()
        server.stop()


def test_an_anonymous_visitor_finds_the_conversation_after_a_restart(
    browser: Browser, tmp_path: Path
) -> None:
    """The server stops and a new process starts on the same data directory: the same browser
    (its signed visitor cookie, the key kept in the data directory) lists and opens its chat."""
    settings = Settings(n_ctx=2048, port=free_port(), data_dir=str(tmp_path), feedback_log="")

    def start() -> Server:
        server = Server(
            build_app(ChatEngine({"local": SlowScripted(CHUNKS)}), settings), "127.0.0.1", settings.port
        )
        server.start()
        return server

    persona = default_persona(load_persona_list(), "zh")
    assert persona is not None
    context = browser.new_context(locale="zh-CN", viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    server = start()
    try:
        page = open_page(context, server.local_url, persona.examples[0])
        page.locator(EXAMPLES).first.click()
        page.locator(LIST_ITEMS, has_text=persona.examples[0]).wait_for()
        page.wait_for_selector(STOP, state="detached")
        server.stop()
        server = start()  # a new process in all but name: nothing is kept in memory
        page.reload(wait_until="domcontentloaded")
        page.locator(LIST_ITEMS, has_text=persona.examples[0]).click()
        page.wait_for_function(
            "([sel, text]) => [...document.querySelectorAll(sel)].some(e => e.innerText.trim() === text)",
            arg=[BOT, REPLY],
        )
        path = Shots("restart").take(page, "reopened")
        assert page.locator(USER).all_inner_texts() == [persona.examples[0]], path
    finally:
        context.close()
        server.stop()
