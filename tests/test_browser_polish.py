"""The page's finish in a real browser (Debian's Chromium via Playwright): Stop marks the cut
reply, every control has an accessible name (on the idle page, while a reply streams, after it
is stopped), the Enter that confirms a Chinese input method's candidate does not send, and the
keyboard alone sends a message.

The app is the whole one (``build_app`` on uvicorn, with a store in a temporary folder). The model
is not the point here, so its backend is ``Words``, a scripted stand-in that streams numbered
words until it is cancelled: a reply long enough to stop, and a short one on demand. Screenshots
go to ``artifacts/screenshots/``. Lighthouse's full audit is ``bench/lighthouse_audit.py``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from guard_fakes import ScriptedBackend
from playwright.sync_api import Browser, Page, Request, expect
from service_support import serve
from support import BOT, INPUT, frames

from chat import ChatEngine
from chat.backends.base import Backend, Chunk, Finish
from chat.i18n import Lang, t
from chat.messages import GenerationParams, Message
from chat.ui import ChatHandlers, history_to_messages

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"

SUBMIT = "#chat-input button.submit-button"
STOP = "#chat-input button.stop-button"
USER = "#chatbot [data-testid='user']"
NOTICE = "#chatbot [data-testid='bot'] .thought-group"
IDLE_JS = f"""() => {{
    const box = document.querySelector("{INPUT}");
    return box !== null && !box.disabled && document.querySelector("{STOP}") === null
        && document.querySelector("{SUBMIT}") !== null;
}}"""
# Roles a user operates; each must have a name a screen reader can say.
CONTROL_ROLES = {
    "button", "checkbox", "combobox", "link", "listbox", "menuitem", "option", "radio",
    "searchbox", "slider", "spinbutton", "switch", "tab", "textbox",
}  # fmt: skip


class Words(Backend):
    """Streams "w0 w1 …", 50 ms apart, ``words`` of them, until cancelled; records each request."""

    name = "local"
    model = "words"

    def __init__(self) -> None:
        self.words = 3
        self.requests: list[list[Message]] = []
        self.cut = threading.Event()  # set when a reply is cancelled or closed before its end

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        self.requests.append(list(messages))
        finished = False
        try:
            for i in range(self.words):
                if cancel is not None and cancel.is_set():
                    return
                time.sleep(0.05)
                yield f"w{i} "
            yield Finish("stop")
            finished = True
        finally:  # cancelled, or closed by the engine mid-reply
            if not finished:
                self.cut.set()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return 8 + sum(len(m.content.split()) for m in messages)

    def context_window(self) -> int:
        return 2048


@dataclass
class App:
    url: str
    backend: Words


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    backend = Words()
    data = tmp_path_factory.mktemp("polish")
    with serve(ChatEngine({"local": backend}), data_dir=str(data)) as url:
        yield App(url, backend)


@pytest.fixture
def open_page(browser: Browser, app: App, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """A fresh context in ``locale`` with the page loaded and its script run; screenshotted at the end."""
    contexts, pages = [], []

    def open_(locale: str = "en-US") -> Page:
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(app.url, wait_until="domcontentloaded")
        page.wait_for_selector(INPUT)
        page.wait_for_function("window.__chatPage === true")  # chat/ui/assets/page.js ran
        pages.append(page)
        return page

    yield open_
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for i, page in enumerate(pages):
        name = re.sub(r"[^\w\-\[\].]+", "_", request.node.name) + (f"-{i}" if i else "")
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    for context in contexts:
        context.close()


def lang_of(locale: str) -> Lang:
    return "zh" if locale.startswith("zh") else "en"


def wait_idle(page: Page) -> None:
    page.wait_for_function(IDLE_JS)


def wait_requests(app: App, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(app.backend.requests) < count:
        assert time.monotonic() < deadline, "the page never sent the message"
        time.sleep(0.02)


def replies(page: Page) -> list[str]:
    """The text of each reply bubble as shown (notice bubbles are left out)."""
    return [el.inner_text().strip() for el in page.locator(f"{BOT}:not(:has(.thought-group))").all()]


def user_texts(page: Page) -> list[str]:
    return [el.inner_text().strip() for el in page.locator(USER).all()]


def unnamed_controls(page: Page) -> list[str]:
    """Chromium's own accessibility tree: every control a user can reach that has no name."""
    cdp = page.context.new_cdp_session(page)
    try:
        found = []
        for node in cdp.send("Accessibility.getFullAXTree")["nodes"]:
            role = (node.get("role") or {}).get("value")
            if node.get("ignored") or role not in CONTROL_ROLES:
                continue
            if not str((node.get("name") or {}).get("value", "")).strip():
                obj = cdp.send("DOM.resolveNode", {"backendNodeId": node["backendDOMNodeId"]})["object"]
                html = cdp.send(
                    "Runtime.callFunctionOn",
                    {"objectId": obj["objectId"], "returnByValue": True,
                     "functionDeclaration": "function() { return this.outerHTML.slice(0, 160); }"},
                )["result"]["value"]  # fmt: skip
                found.append(f"{role}: {html}")
        return found
    finally:
        cdp.detach()


def focus_is_visible(page: Page) -> bool:
    return page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
        return (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== "none"; }"""
    )


def tab_to(page: Page, predicate: str, limit: int = 80) -> None:
    """Press Tab until ``predicate`` (JS, of the focused element ``el``) holds."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const el = document.activeElement; return Boolean({predicate}); }}"):
            return
    pytest.fail(f"Tab never reached an element where {predicate}")


# -- Stop ----------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(
    ("locale", "message"),
    [("en-US", "Tell me a very long story."), ("zh-CN", "给我讲一个很长的故事。")],
    ids=["en-US", "zh-CN"],
)
def test_stop_marks_the_cut_reply_and_keeps_its_text_and_every_control_has_a_name(
    app: App, open_page, locale: str, message: str
) -> None:
    lang = lang_of(locale)
    page = open_page(locale)
    assert page.evaluate("document.documentElement.lang").lower().startswith(lang)
    for closed in page.locator("button[aria-expanded='false']").all():  # accordions, menus
        if closed.is_visible():
            closed.click()
    assert unnamed_controls(page) == [], "idle page"

    app.backend.words, app.backend.cut = 2000, threading.Event()
    before = len(app.backend.requests)
    page.locator(INPUT).fill(message)
    page.locator(INPUT).press("Enter")
    stop = page.get_by_role("button", name=t("page.stop", lang), exact=True)  # Stop has a name
    stop.wait_for()
    page.wait_for_function(f"""() => [...document.querySelectorAll("{BOT}")]
        .some(el => (el.getAttribute("aria-label") || "").includes("w5 "))""")
    assert unnamed_controls(page) == [], "while a reply streams (Stop shown)"
    assert page.locator(STOP).get_attribute("aria-label") == t("page.stop", lang)
    stop.focus()  # the keyboard presses Stop too (a click waits for the growing page to settle)
    page.keyboard.press("Enter")
    assert app.backend.cut.wait(10), "the server went on generating after Stop"
    wait_idle(page)

    mark = "■ " + t("notice.stopped", lang)
    page.locator(NOTICE, has_text=mark).wait_for()
    assert [n.strip() for n in page.locator(NOTICE).all_inner_texts()] == [mark]
    shown = replies(page)[-1]
    assert shown.startswith("w0 w1 w2 w3 w4 w5") and "w1999" not in shown  # the partial text stays
    # after a reply: copy, retry, undo, like and dislike buttons, and the notice's toggle
    assert unnamed_controls(page) == [], "after a stopped reply"
    assert page.locator(SUBMIT).get_attribute("aria-label") == t("page.send", lang)

    # The store keeps the turn as stopped, with the text the user saw (and at most the word or
    # two that were on their way to the page when Stop arrived).
    listing = page.request.get(app.url + "api/conversations").json()
    newest = listing["conversations"][0]["id"]
    stored = page.request.get(app.url + f"api/conversations/{newest}").json()["messages"]
    assert [m["role"] for m in stored[-2:]] == ["user", "assistant"]
    assert stored[-1]["status"] == "stopped" and stored[-1]["content"].startswith(shown)

    # The next turn keeps the mark on the page and does not send it to the model as context.
    app.backend.words = 3
    page.locator(INPUT).fill("继续" if lang == "zh" else "Go on.")
    page.locator(INPUT).press("Enter")
    wait_requests(app, before + 2)
    wait_idle(page)
    expect(page.locator(BOT).last).to_have_text(re.compile(r"^\s*w0 w1 w2\s*$"))
    assert [n.strip() for n in page.locator(NOTICE).all_inner_texts()] == [mark]
    context = app.backend.requests[before + 1]
    assert [m.role for m in context if m.role != "system"] == ["user", "assistant", "user"]
    assert context[-2].content.startswith(shown)  # the cut reply is context, its mark is not
    assert all(t("notice.stopped", lang) not in m.content for m in context)


# -- Chinese input methods -----------------------------------------------------------------------


class InputMethod:
    """Chromium's own input path (CDP): a composition "nihao", Enter mid-composition as a key that
    reaches the page with isComposing (the IME picks the candidate), then the commit "你好"."""

    def compose_and_press_enter(self, page: Page) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Input.imeSetComposition", {"text": "nihao", "selectionStart": 5, "selectionEnd": 5})
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        self.cdp.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **key})
        self.cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})

    def commit(self, page: Page) -> None:
        self.cdp.send("Input.insertText", {"text": "你好"})  # the chosen candidate ends the composition
        self.cdp.detach()


class DispatchedEvents:
    """The same as DOM events: compositionstart, keydown (keyCode 229) and keypress of Enter with
    isComposing, then the committed text and compositionend."""

    def compose_and_press_enter(self, page: Page) -> None:
        page.evaluate(
            """() => {
            const box = document.querySelector("#chat-input textarea");
            box.dispatchEvent(new CompositionEvent("compositionstart", {bubbles: true, data: ""}));
            box.value = "nihao";
            box.dispatchEvent(new InputEvent("input", {bubbles: true, data: "nihao", isComposing: true}));
            for (const [type, keyCode] of [["keydown", 229], ["keypress", 13]]) {
                box.dispatchEvent(new KeyboardEvent(type, {key: "Enter", code: "Enter", keyCode,
                    isComposing: true, bubbles: true, cancelable: true}));
            }
        }"""
        )

    def commit(self, page: Page) -> None:
        page.evaluate(
            """() => {
            const box = document.querySelector("#chat-input textarea");
            box.value = "你好";
            box.dispatchEvent(new InputEvent("input", {bubbles: true, data: "你好", isComposing: true}));
            box.dispatchEvent(new CompositionEvent("compositionend", {bubbles: true, data: "你好"}));
        }"""
        )


class CompositionEndsFirst:
    """Safari's order: compositionend with the candidate, then the Enter's keydown (keyCode 229,
    isComposing false) and a keypress."""

    pending = "你好"

    def compose_and_press_enter(self, page: Page) -> None:
        page.evaluate(
            """() => {
            const box = document.querySelector("#chat-input textarea");
            box.dispatchEvent(new CompositionEvent("compositionstart", {bubbles: true, data: ""}));
            box.value = "你好";
            box.dispatchEvent(new InputEvent("input", {bubbles: true, data: "你好", isComposing: true}));
            box.dispatchEvent(new CompositionEvent("compositionend", {bubbles: true, data: "你好"}));
            for (const [type, keyCode] of [["keydown", 229], ["keypress", 13]]) {
                box.dispatchEvent(new KeyboardEvent(type, {key: "Enter", code: "Enter", keyCode,
                    bubbles: true, cancelable: true}));
            }
            box.dispatchEvent(new KeyboardEvent("keyup", {key: "Enter", code: "Enter", keyCode: 13, bubbles: true}));
        }"""
        )

    def commit(self, page: Page) -> None:
        pass  # the composition ended before the Enter


@pytest.mark.browser
def test_enter_confirming_a_pinyin_candidate_does_not_send(app: App, open_page) -> None:
    """Each way a browser reports the composition, one after the other on one page."""
    page = open_page("zh-CN")
    app.backend.words = 3
    box = page.locator(INPUT)
    posts: list[object] = []  # events the page posted with the textbox's text as an input: sends

    def watch(request: Request) -> None:
        if request.method == "POST" and "/gradio_api/" in request.url:
            body = json.loads(request.post_data or "{}")
            if {"nihao", "你好"} & {value for value in body.get("data", []) if isinstance(value, str)}:
                posts.append(body.get("fn_index"))

    page.on("request", watch)
    for sent, ime in enumerate((InputMethod, DispatchedEvents, CompositionEndsFirst)):
        method, before = ime(), len(app.backend.requests)
        box.focus()
        posted = len(posts)
        method.compose_and_press_enter(page)
        page.wait_for_timeout(500)  # a send would have posted its first event within milliseconds
        assert len(posts) == posted, f"{ime}: the page posted an event"
        assert box.input_value() == getattr(method, "pending", "nihao") and box.is_enabled(), ime
        assert user_texts(page) == ["你好"] * sent and len(app.backend.requests) == before, ime
        method.commit(page)
        assert box.input_value() == "你好", ime
        box.press("Enter")  # a plain Enter after the composition ended sends
        wait_requests(app, before + 1)
        wait_idle(page)
        assert len(posts) > posted, ime  # the watch above sees a send
        assert user_texts(page) == ["你好"] * (sent + 1), ime
        assert len(app.backend.requests) == before + 1, ime
        assert app.backend.requests[-1][-1].content == "你好", ime


# -- the keyboard --------------------------------------------------------------------------------


@pytest.mark.browser
def test_the_keyboard_alone_sends_messages(app: App, open_page) -> None:
    page = open_page("en-US")
    app.backend.words = 3
    before = len(app.backend.requests)

    page.keyboard.press("Tab")  # the skip link comes first and shows when focused
    assert page.evaluate("document.activeElement.textContent") == t("page.skip", "en")
    assert page.locator(".skip-link").is_visible() and focus_is_visible(page)
    page.keyboard.press("Enter")
    assert page.evaluate(f'document.activeElement === document.querySelector("{INPUT}")')
    page.keyboard.type("Hello from the keyboard")
    page.keyboard.press("Enter")
    wait_requests(app, before + 1)
    wait_idle(page)

    # Tab order reaches the message box and then its Send button; Space presses it.
    tab_to(page, f'el.matches("{INPUT}")')
    page.keyboard.type("And a second one")
    tab_to(page, f'el.matches("{SUBMIT}")', limit=3)
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == t("page.send", "en")
    assert focus_is_visible(page)
    page.keyboard.press("Space")
    wait_requests(app, before + 2)
    wait_idle(page)
    assert user_texts(page) == ["Hello from the keyboard", "And a second one"]
    assert replies(page)[-1] == "w0 w1 w2"


# -- the handler alone (no browser) ----------------------------------------------------------------

SESSION = SimpleNamespace(session_hash="polish")  # stands in for gr.Request: only the session is read


@pytest.mark.parametrize(("message", "lang"), [("Hello there", "en"), ("你好", "zh")], ids=["en", "zh"])
def test_stop_marks_a_cut_reply_once_and_a_finished_reply_never(message: str, lang: Lang) -> None:
    handlers = ChatHandlers(ChatEngine({"local": ScriptedBackend(["one ", "two ", "three"])}))
    args = (message, [], "", 0.0, 512, 16, 1.0)
    reply = frames(handlers.ui(*args, request=SESSION))
    frame, _ = next(reply)
    assert frame[-1].content == "one "
    reply.close()  # what Gradio does on Stop
    history = [{"role": "user", "content": message}, {"role": "assistant", "content": "one "}]
    marked = handlers.mark_stopped(history, SESSION)
    assert marked[:2] == history
    assert marked[-1].metadata["title"] == "■ " + t("notice.stopped", lang)
    assert handlers.mark_stopped(marked, SESSION) == gr.skip()  # marked once
    as_sent = [*history, {"role": "assistant", "metadata": marked[-1].metadata, "content": ""}]
    assert history_to_messages(as_sent) == [Message("user", message), Message("assistant", "one ")]

    *_, (frame, _) = frames(handlers.ui(*args, request=SESSION))  # a reply that reached its end
    assert frame[-1].content == "one two three"
    finished = [*history[:1], {"role": "assistant", "content": "one two three"}]
    assert handlers.mark_stopped(finished, SESSION) == gr.skip()  # Stop pressed too late marks nothing


def test_chatinterfaces_copy_of_a_stopped_history_keeps_the_mark() -> None:
    """ChatInterface copies the page's chatbot into its history when the cut reply ends; when
    that copy was taken before Stop's mark arrived (perhaps with a late word of the reply) and is
    handled after the mark's own copy (a loaded machine), it would drop the mark from the next
    turn, or show the late word there: its copies keep the reply as Stop marked it instead."""
    handlers = ChatHandlers(ChatEngine({"local": ScriptedBackend(["one ", "two ", "three"])}))
    with gr.Blocks() as demo:
        chat = gr.ChatInterface(lambda message, history: "")  # only its events matter here
        handlers.attach_stop_mark(demo, chat)
    copies = [f for f in demo.fns.values() if f.outputs == [chat.chatbot_state, chat.chatbot_value]]
    assert len(copies) > 2 and all(f.fn == handlers.keep_mark for f in copies), "ChatInterface changed"

    reply = frames(handlers.ui("Hello there", [], "", 0.0, 512, 16, 1.0, request=SESSION))
    next(reply)
    reply.close()  # Stop
    history = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "one "}]
    handlers.mark_stopped(history, SESSION)
    state, value = handlers.keep_mark(history, SESSION)  # the copy taken before the mark
    assert state is value and state[:2] == history and len(state) == 3
    assert state[-1]["metadata"]["id"] == "stopped" and state[-1]["role"] == "assistant"
    assert handlers.keep_mark(state, SESSION)[0] == state  # a copy with the mark: as it is
    # a copy from a page that got one more word after Stop: the reply as Stop marked it, as shown
    late = [history[0], {"role": "assistant", "content": "one two "}]
    assert handlers.keep_mark(late, SESSION)[0] == state
    assert handlers.keep_mark(history[:1], SESSION)[0] == history[:1]  # Undo: not that history
    other = [history[0], {"role": "assistant", "content": "another conversation's reply"}]
    assert handlers.keep_mark(other, SESSION)[0] == other  # as long, but not the one Stop marked
