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

import contextlib
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
from support import BOT, INPUT, answered, frames, open_chat

from chat import ChatEngine
from chat.backends.base import Backend, Chunk, Finish
from chat.i18n import Lang, t
from chat.messages import GenerationParams, Message
from chat.ui import I18N, ChatHandlers, history_to_messages

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
        self.finish = "stop"  # how a reply that reaches its last word ends ("length": cut at the limit)
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
            yield Finish(self.finish)
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

    def open_(locale: str = "en-US", *, width: int = 1280, visitor: bool = False) -> Page:
        # a visitor: a page that came through a proxy (its header says so) is not the operator's
        headers = {"X-Forwarded-For": "203.0.113.7"} if visitor else {}
        context = browser.new_context(
            locale=locale,
            viewport={"width": width, "height": 800},
            extra_http_headers=headers,
            permissions=["clipboard-read", "clipboard-write"],
        )
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        open_chat(page, app.url)
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


# -- a new user's first walk (issue 35) ----------------------------------------------------------

TUTOR = {"en": "Tutor (English)", "zh": "学习辅导老师（中文）"}
FIRST = {"en": "How do fractions work?", "zh": "分数是怎么回事？"}
# names Gradio gives its controls in English whatever the page's language
GRADIO_ENGLISH = (
    "Toggle Sidebar", "Reset to default value", "number input for", "range slider for", "Copy message",
    "Copy conversation", "chatbot conversation", "Gradio footer navigation",
)  # fmt: skip


def control_names(page: Page) -> list[str]:
    """The names Chromium's accessibility tree gives every control on the page."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    return [
        str((n.get("name") or {}).get("value", ""))
        for n in nodes
        if not n.get("ignored")
        and (n.get("role") or {}).get("value") in {*CONTROL_ROLES, "log", "contentinfo"}
    ]


def choose(page: Page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.locator("ul[role='listbox'] li", has_text=option).first.click()
    page.wait_for_function(f"document.querySelector('{dropdown} input').value === {json.dumps(option)}")
    page.locator(f"{dropdown} input").blur()  # as a user moves on (the dropdown settles on blur)


def open_listed(page: Page, title: str) -> None:
    """Open a conversation from the list as a user does: a click that lands while the list is
    being redrawn (after New chat, on a busy machine) is lost, and the user clicks again."""
    checked = page.locator("#conversation-list input:checked")
    for _ in range(3):
        page.locator("#conversation-list label", has_text=title).click()
        with contextlib.suppress(AssertionError):
            expect(checked).to_have_count(1, timeout=10_000)
            return
    expect(checked).to_have_count(1)


def open_manage(page: Page, lang: Lang) -> None:
    """The sidebar's "Rename or delete" accordion, open."""
    if not page.locator("#delete").is_visible():
        page.get_by_text(I18N.translations[lang]["manage"], exact=True).click()
    page.locator("#delete").wait_for()


def listed(page: Page) -> list[str]:
    return [label.strip() for label in page.locator("#conversation-list label").all_inner_texts()]


@pytest.mark.browser
@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_first_visit_blank_send_names_persona_ratings_delete_undo_and_reload(
    app: App, open_page, locale: str
) -> None:
    lang = lang_of(locale)
    app.backend.words = 3
    page = open_page(locale)
    before = len(app.backend.requests)

    # An empty or blank box sends nothing: Send is disabled, Enter does nothing, nothing is stored.
    send = page.locator(SUBMIT)
    assert send.is_disabled()
    page.locator(INPUT).fill("   ")
    page.locator(INPUT).press("Enter")
    page.wait_for_timeout(300)  # a send would post at once and show the user's bubble
    assert user_texts(page) == [] and len(app.backend.requests) == before and send.is_disabled()
    assert page.locator("#conversation-list").get_attribute("data-empty") == t("page.no_conversations", lang)

    # Every control is named in the page's language (Gradio's English names are replaced).
    names = control_names(page)
    assert not [n for n in names if any(english in n for english in GRADIO_ENGLISH)], names
    assert {t("page.sidebar", lang), t("page.reset", lang), t("page.chat_log", lang)} <= set(names)
    # one "Settings" on the page: Gradio's own (developer options) is not in the footer
    expect(page.locator("footer")).not_to_contain_text(I18N.translations[lang]["controls"])

    # The conversation keeps its persona: start it as the tutor, switch, open it again.
    choose(page, "#persona", TUTOR[lang])
    page.locator(INPUT).fill(FIRST[lang])
    assert send.is_enabled()
    page.locator(INPUT).press("Enter")
    wait_requests(app, before + 1)
    wait_idle(page)
    assert page.locator(INPUT).get_attribute("placeholder")  # the placeholder stays after a send
    stats = page.locator("#stats").inner_text()
    assert t("stats.tokens", lang, n=3) in stats and "finish" not in stats and "evaluated" not in stats
    page.locator("#new-chat").click()
    page.wait_for_function("() => document.querySelector('#stats').innerText.trim() === ''")  # no stale line
    expect(page.locator("#conversation-list input:checked")).to_have_count(0)  # a new chat is open
    choose(page, "#persona", "General assistant (English)" if lang == "en" else "通用助手（中文）")
    page.locator("#conversation-list label", has_text=FIRST[lang]).click()
    # reopening runs the list's event and then the persona's own change: slow under a loaded CI
    expect(page.locator("#persona input")).to_have_value(TUTOR[lang], timeout=20_000)
    expect(page.locator(USER)).to_have_text([FIRST[lang]])

    # Like stands before Dislike; a like is kept and shown again when the conversation reopens.
    like, dislike = (
        page.locator("#chatbot button[data-feedback='like']"),
        page.locator("#chatbot button[data-feedback='dislike']"),
    )
    assert like.bounding_box()["x"] < dislike.bounding_box()["x"]
    like.click()
    expect(like).to_have_attribute("aria-label", t("page.liked", lang))

    # Delete asks first; Escape closes the question; Undo brings everything back, the like too.
    open_manage(page, lang)
    page.locator("#delete").click()
    page.wait_for_function("document.activeElement === document.querySelector('#delete-yes')")
    page.keyboard.press("Escape")
    expect(page.locator("#delete-yes")).to_be_hidden()
    assert listed(page) == [FIRST[lang]] and user_texts(page) == [FIRST[lang]]
    page.locator("#delete").click()
    page.locator("#delete-yes").click()
    page.locator("#undo-delete").wait_for()
    expect(page.locator("#conversation-list label")).to_have_count(0)
    expect(page.locator(USER)).to_have_count(0)
    page.locator("#undo-delete").click()
    expect(page.locator("#conversation-list input:checked")).to_have_count(1)
    expect(page.locator(USER)).to_have_text([FIRST[lang]])
    expect(page.locator("#chatbot button[data-feedback='like']")).to_have_attribute(
        "aria-label", t("page.liked", lang)
    )

    # A reload comes back to the open conversation and its settings.
    page.reload(wait_until="domcontentloaded")
    page.wait_for_selector(f"{USER}")
    assert user_texts(page) == [FIRST[lang]]
    assert page.locator("#persona input").input_value() == TUTOR[lang]
    expect(page.locator("#chatbot button[data-feedback='like']")).to_have_attribute(
        "aria-label", t("page.liked", lang)
    )

    # The trash button starts a new chat: nothing stays selected for Rename or Delete to act on.
    page.get_by_role("button", name=t("page.clear", lang), exact=True).click()
    expect(page.locator("#conversation-list input:checked")).to_have_count(0)
    expect(page.locator(USER)).to_have_count(0)
    assert listed(page) == [FIRST[lang]]

    # A reply cut at the length limit offers Continue, which asks the model to go on.
    app.backend.finish = "length"
    try:
        page.locator(INPUT).fill(FIRST[lang])
        page.locator(INPUT).press("Enter")
        carry_on = page.locator("#continue-reply")
        expect(carry_on).to_be_visible()
        wait_idle(page)
        # Copy message and Copy conversation leave the length notice out, and no empty entry
        page.locator(".message-buttons-left").last.get_by_role("button", name=t("page.copy", lang)).click()
        page.wait_for_function("async () => (await navigator.clipboard.readText()).startsWith('w0')")
        assert page.evaluate("navigator.clipboard.readText()").rstrip() == "w0 w1 w2"
        page.get_by_role("button", name=t("page.copy_all", lang), exact=True).click()
        page.wait_for_function("async () => (await navigator.clipboard.readText()).startsWith('user:')")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.rstrip() == f"user: {FIRST[lang]}\n\nassistant: w0 w1 w2", copied
        app.backend.finish = "stop"
        sent = len(app.backend.requests)
        carry_on.click()
        wait_requests(app, sent + 1)
        assert app.backend.requests[-1][-1].content == t("page.continue_words", lang)
        expect(carry_on).to_be_hidden()  # the next reply ended by itself
    finally:
        app.backend.finish = "stop"


@pytest.mark.browser
@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_model_hint_admin_panel_import_keyboard_and_touch_targets(
    app: App, open_page, locale: str, tmp_path: Path
) -> None:
    """A Chinese page on the embedded English model says so (once); the knowledge admin panel is the
    operator's; an imported file is listed and open at once; the list is one Tab stop; the skip
    link is above the sidebar; on a phone Escape closes the sidebar and every control is 44 px."""
    lang = lang_of(locale)
    app.backend.model = "SmolLM2-135M-Instruct.BF16"  # as the embedded model is named when loaded
    try:
        page = open_page(locale)
        hint = page.locator("#model-hint")
        if lang == "zh":
            expect(hint).to_contain_text("CHAT_MODEL")
            page.locator("#model-hint-close").click()
            expect(hint).to_be_hidden()
        else:
            expect(page.locator("#knowledge-admin")).to_be_visible()  # the operator's page (loopback)
            expect(hint).to_be_hidden()
        page.reload(wait_until="domcontentloaded")
        page.wait_for_function("window.__chatPage === true")
        expect(page.locator("#knowledge-admin")).to_be_visible()
        assert not hint.is_visible()  # dismissed once, it stays away
        # the admin panel names a chosen file in full, not as ".md"
        page.get_by_text(I18N.translations[lang]["knowledge_admin"], exact=True).click()
        chosen = tmp_path / "return_policy_for_customers.md"
        chosen.write_text("# Returns\n\nWithin 30 days.\n")
        page.locator("#knowledge-files input[type='file']").set_input_files(str(chosen))
        stem = page.locator("#knowledge-files .stem")
        expect(stem).to_have_text("return_policy_for_customers")
        assert stem.bounding_box()["width"] > 100
        assert page.locator("#knowledge-files [aria-label='common.upload']").count() == 0  # named
    finally:
        app.backend.model = "words"
    visitor = open_page(locale, visitor=True)  # through a proxy from elsewhere: not the operator
    expect(visitor.locator("#knowledge")).to_be_visible()
    expect(visitor.locator("#knowledge-admin")).to_be_hidden()

    # An imported conversation is listed and open at once; two make a list of one Tab stop.
    for n in (1, 2):
        path = tmp_path / f"chat{n}.json"
        path.write_text(
            json.dumps(
                [{"role": "user", "content": f"{FIRST[lang]} {n}"}, {"role": "assistant", "content": "w0"}]
            )
        )
        import_button = visitor.get_by_role("button", name=I18N.translations[lang]["import_json"])
        if not import_button.is_visible():  # its accordion opens first
            visitor.get_by_text(I18N.translations[lang]["conversation"], exact=True).click()
        with visitor.expect_file_chooser() as chooser:
            import_button.click()
        chooser.value.set_files(str(path))
        expect(visitor.locator(USER)).to_have_text([f"{FIRST[lang]} {n}"])
        expect(visitor.locator("#conversation-list label")).to_have_count(n)
    checked = visitor.locator("#conversation-list input:checked")
    checked.focus()
    visitor.keyboard.press("Tab")
    assert visitor.evaluate("!document.activeElement.closest('#conversation-list')")  # one Tab stop
    checked.focus()
    visitor.keyboard.press("ArrowDown")  # arrow keys move through it, opening the next
    expect(visitor.locator(USER)).to_have_text([f"{FIRST[lang]} 1"])

    # The skip link (first in the Tab order: test_the_keyboard_alone_sends_messages) shows above
    # the open sidebar when it has the focus.
    visitor.evaluate("document.querySelector('.skip-link').focus()")
    visitor.wait_for_timeout(100)
    assert visitor.evaluate("""() => { const a = document.activeElement, r = a.getBoundingClientRect();
        return a.matches('.skip-link') && document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === a; }""")

    # A phone: the sidebar's toggle and Send are 44 px targets off the edge; Escape closes the sidebar.
    phone = open_page(locale, width=390)
    toggle = phone.locator("#sidebar .toggle-button")
    box: dict[str, float] | None = None
    while box != (box := toggle.bounding_box()):  # the sidebar slides into place first
        phone.wait_for_timeout(100)
    assert box is not None
    assert box["width"] >= 44 and box["height"] >= 44 and box["x"] >= 4, box
    assert phone.locator(SUBMIT).bounding_box()["height"] >= 44
    toggle.click()
    phone.wait_for_function("document.querySelector('#sidebar').classList.contains('open')")
    phone.keyboard.press("Escape")
    phone.wait_for_function("!document.querySelector('#sidebar').classList.contains('open')")


# -- a long chat, and a reply cut at the length limit -----------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_long_chat_says_once_what_the_model_sees_and_a_cut_reply_says_so_under_itself(
    app: App, open_page, locale: str
) -> None:
    """Messages of 500 words (the stand-in model counts a word a token) make the third turn leave
    the first out of a 2,048-token window: the summary written after the second reply stands in
    for it, and one line under the chat (not a bubble per reply) says what the model sees. The
    third reply stops at the length limit: the notice sits below it, beside Continue. Both are in
    the page's language, whatever the language of the messages."""
    from chat.reply.summaries import SUMMARIZER

    lang = lang_of(locale)
    page = open_page(locale)
    try:
        for n in range(3):
            if n == 2:
                app.backend.finish = "length"
            page.locator(INPUT).fill(f"{n} " + " ".join(["word"] * 500))  # English on both pages
            page.locator(INPUT).press("Enter")
            page.locator(BOT).nth(n).wait_for()
            wait_idle(page)
            assert SUMMARIZER.wait(30)  # the summary the reply started in the background
    finally:
        app.backend.finish = "stop"

    said = t("notice.history_summary", lang, seen=3, summarised=2)
    expect(page.locator("#stats")).to_contain_text(said, timeout=30_000)
    expect(page.get_by_text(said)).to_have_count(1)  # once on the page
    expect(page.locator(NOTICE)).to_have_count(0)  # no notice bubble in the chat, above no reply
    cut = t("notice.length", lang)
    notice, carry_on = page.locator("#length-notice"), page.locator("#continue-reply")
    expect(notice).to_have_text(cut, timeout=30_000)  # the stats line's change shows it
    expect(carry_on).to_be_visible()
    expect(page.get_by_text(cut)).to_have_count(1)
    reply, below, button = (x.bounding_box() for x in (page.locator(BOT).last, notice, carry_on))
    assert reply and below and button
    assert below["y"] >= reply["y"] + reply["height"], (reply, below)  # under the reply
    # beside the button: on the same line
    assert below["y"] < button["y"] + button["height"] and button["y"] < below["y"] + below["height"]


PROFILE_NAME = {"en": "Ada", "zh": "小明"}
ASKED = {  # (about the assistant, about the user)
    "en": ("What is your name?", "What is my name?"),
    "zh": ("你叫什么名字？", "我叫什么名字？"),
}


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("zh-CN", "zh")])
def test_the_profile_saved_on_the_page_is_the_users_not_the_assistants(
    app: App, open_page, locale: str, lang: Lang
) -> None:
    """Saved in the page's form, the profile reaches the user's turns, and never a question about
    the assistant itself: a small model given the user's name there answered with it as its own."""
    page = open_page(locale)
    # opening the form loads the stored profile into it: type once that answer has landed
    answered(page, page.locator("#profile").get_by_text(I18N.translations[lang]["profile"]).click)
    page.locator("#profile-name input, #profile-name textarea").first.fill(PROFILE_NAME[lang])
    page.locator("#profile-use input").check()
    page.locator("#profile-save").click()
    expect(page.locator("#profile-status")).to_have_text(t("profile.saved", lang), timeout=30_000)

    about_assistant, about_user = ASKED[lang]
    for question, named in ((about_assistant, False), (about_user, True)):
        before = len(app.backend.requests)
        page.locator(INPUT).fill(question)
        page.locator(INPUT).press("Enter")
        wait_requests(app, before + 1)
        wait_idle(page)
        prompt = "\n".join(m.content for m in app.backend.requests[before])
        assert question in prompt
        assert (PROFILE_NAME[lang] in prompt) is named, (question, prompt)


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_conversation_keeps_the_persona_it_was_sent_with(app: App, open_page, locale: str) -> None:
    """A persona picked and not used belongs to no conversation: picking one just as another
    conversation opens (a dropdown commits on blur, after the click) cannot rename that one's."""
    lang = lang_of(locale)
    general = "General assistant (English)" if lang == "en" else "通用助手（中文）"
    page = open_page(locale)
    choose(page, "#persona", TUTOR[lang])
    before = len(app.backend.requests)
    question = f"{FIRST[lang]} ({locale})"
    page.locator(INPUT).fill(question)
    page.locator(INPUT).press("Enter")
    wait_requests(app, before + 1)
    wait_idle(page)
    expect(page.locator("#conversation-list input:checked")).to_have_count(1)  # it is in the list
    choose(page, "#persona", general)  # picked in the open conversation, never sent with
    page.locator("#new-chat").click()
    expect(page.locator("#conversation-list input:checked")).to_have_count(0)
    open_listed(page, question)
    expect(page.locator(USER)).to_have_text([question], timeout=30_000)
    expect(page.locator("#persona input")).to_have_value(TUTOR[lang], timeout=30_000)
