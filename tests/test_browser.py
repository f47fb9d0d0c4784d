"""End to end in a real browser: Debian's Chromium driven by Playwright, against the whole app.

The app is the real one (``build_app`` on uvicorn) over the engine ``chat.factory.build_engine``
builds from ``Settings`` (guards, cache, feedback log), with the session's embedded model. A thin
spy around ``engine.stream`` records what each request asked for and how it ended, so a test can
wait for the server instead of guessing with sleeps, and check that UI controls reached the model.

Every test saves a screenshot to ``artifacts/screenshots/<test name>.png``. Selectors come from
Gradio's own DOM: ``#chatbot [data-testid=user|bot]`` bubbles (a bot bubble's ``aria-label`` holds
the raw reply text), ``.thought-group`` for notice and error bubbles, and the chat textbox
``#chat-input`` with its submit and stop buttons. A message the input checks refuse never enters
the chat: Gradio's validator shows the refusal as ``#chat-input div.validation-error`` above the
textbox, which keeps the text.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page
from support import BOT, INPUT, free_port, open_chat

from chat import Settings, factory
from chat.backends import registry
from chat.engine import ChatEngine
from chat.engine.window import MIN_REPLY_TOKENS
from chat.i18n import t
from chat.messages import Done, GenerationParams, TextDelta
from chat.reply.personas import load_personas
from chat.server import Server, build_app
from chat.ui import I18N

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"

CHAT = "#chatbot"
USER = "#chatbot [data-testid='user']"
NOTICE = "#chatbot [data-testid='bot'] .thought-group"
SUBMIT = "#chat-input button.submit-button"
STOP = "#chat-input button.stop-button"
REFUSAL = "#chat-input div.validation-error"  # the validator's message (the textarea gets the class too)
INPUT_LABEL = "#chat-input [data-testid='block-info']"  # hidden until a refusal shows in it
HISTORY_CELLS = "[data-testid^='dataset-cell-']"
HISTORY_ITEM = "[data-testid='dataset-cell-0-0']"
EXPORT_LINK = "#export-file a[data-testid='download-link']"
IMPORT_INPUT = "input[type='file'][accept='.json']"

# The chat textbox is disabled while a request runs and the stop button replaces submit.
IDLE_JS = f"""() => {{
    const box = document.querySelector("{INPUT}");
    return box !== null && !box.disabled && document.querySelector("{STOP}") === null
        && document.querySelector("{SUBMIT}") !== null;
}}"""

LONG_STORY = "Write a long story about a dragon and a knight."  # runs to max new tokens (512)


# -- the app -------------------------------------------------------------------------------------


@dataclass
class Call:
    """One ``engine.stream`` request and the events it produced."""

    messages: list[Any]
    params: GenerationParams | None
    options: dict[str, Any]
    events: list[Any] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> Done | None:
        return next((e for e in self.events if isinstance(e, Done)), None)

    @property
    def streamed(self) -> bool:
        return any(isinstance(e, TextDelta) for e in self.events)


class EngineSpy:
    """Wraps the real ``engine.stream``: records each call, changes nothing."""

    def __init__(self, engine: ChatEngine) -> None:
        self.calls: list[Call] = []
        self._stream = engine.stream
        engine.stream = self.stream  # the UI handlers look it up on every request

    def stream(self, messages: Any, params: GenerationParams | None = None, **options: Any) -> Iterator[Any]:
        call = Call(list(messages), params, options)
        self.calls.append(call)
        events = self._stream(call.messages, params, **options)
        try:
            for event in events:
                call.events.append(event)
                yield event
        finally:
            events.close()
            call.finished.set()

    def wait_new_call(self, before: int, timeout: float = 90.0) -> Call:
        """The first call made after ``before`` calls, once it has ended."""
        deadline = time.monotonic() + timeout
        while len(self.calls) <= before:
            assert time.monotonic() < deadline, "the UI never sent a request to the engine"
            time.sleep(0.02)
        call = self.calls[before]
        assert call.finished.wait(max(0.0, deadline - time.monotonic())), "the request never ended"
        return call


@dataclass
class App:
    url: str
    engine: ChatEngine
    spy: EngineSpy
    feedback_log: Path


@pytest.fixture(scope="module")
def app(local_backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The whole app as ``app.py`` builds it from Settings, on a free port, with a feedback log."""
    feedback_log = tmp_path_factory.mktemp("browser") / "feedback.jsonl"
    settings = Settings(
        n_ctx=local_backend.context_window(),
        port=free_port(),
        feedback_log=str(feedback_log),
        store=False,  # the browser-only history (CHAT_STORE=off); test_browser_layout has the store's
    )
    with registry.override("local", lambda settings, **_: local_backend):  # the session's model
        engine = factory.build_engine(settings)
    assert engine.input_guard is not None, "build_engine no longer wires the guards"
    spy = EngineSpy(engine)
    server = Server(build_app(engine, settings), host="127.0.0.1", port=settings.port)
    server.start()
    yield App(server.local_url, engine, spy, feedback_log)
    server.stop()


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture
def open_page(browser: Browser, app: App, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Open the app in a fresh browser context (own locale, own localStorage history).

    The first page opened is screenshotted at the end of the test, unless the test saved one.
    """
    contexts = []
    pages: list[Page] = []

    def open_(locale: str = "en-US", **options: Any) -> Page:
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800}, **options)
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        open_chat(page, app.url)
        pages.append(page)
        return page

    yield open_
    if pages and not getattr(request.node, "screenshot_saved", False):
        screenshot(pages[0], request)
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Callable[..., Page]) -> Page:
    return open_page()


def screenshot(page: Page, request: pytest.FixtureRequest, suffix: str = "") -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w\-\[\].]+", "_", request.node.name) + suffix
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if not suffix:
        request.node.screenshot_saved = True
    return path


# -- driving the chat ----------------------------------------------------------------------------


def wait_idle(page: Page, timeout: float = 90_000) -> None:
    page.wait_for_function(IDLE_JS, timeout=timeout)


def type_message(page: Page, text: str) -> None:
    box = page.locator(INPUT)
    box.fill(text)
    box.press("Enter")


def turn(app: App, page: Page, action: Callable[[], None]) -> Call:
    """Do ``action`` (send, retry, edit…), wait for its request to end and the page to show it."""
    before = len(app.spy.calls)
    action()
    call = app.spy.wait_new_call(before)
    if call.done is not None:
        wait_for_reply(page, call.done.text)
    wait_idle(page)
    return call


def send(app: App, page: Page, text: str) -> Call:
    return turn(app, page, lambda: type_message(page, text))


def refuse(app: App, page: Page, text: str) -> str:
    """Submit ``text``, expect the validator to refuse it, and return the refusal shown.

    Typing clears an earlier refusal, so the one returned is this message's. The model must not
    have been asked, the chat must not have changed, and the textbox must still hold the text.
    """
    before, shown_before = len(app.spy.calls), user_texts(page)
    box = page.locator(INPUT)
    box.fill(text)
    page.wait_for_function(f"document.querySelector(`{REFUSAL}`) === null")
    box.press("Enter")
    refusal = page.locator(REFUSAL)
    refusal.wait_for()
    wait_idle(page)
    assert len(app.spy.calls) == before, "a refused message reached the engine"
    assert user_texts(page) == shown_before, "a refused message entered the chat"
    assert box.input_value() == text  # nothing the user wrote is lost
    return refusal.inner_text().strip()


def shown(text: str) -> str:
    """A reply as the page holds it: the chatbot drops the whitespace around a message (a reply
    the model ended with a newline is shown, and labelled, without it)."""
    return text.strip()


def wait_for_reply(page: Page, text: str) -> None:
    """Until a bot bubble holds ``text`` (its aria-label carries the raw Markdown)."""
    page.wait_for_function(
        """([sel, prefix, text]) => [...document.querySelectorAll(sel)]
            .some(el => (el.getAttribute("aria-label") || "").startsWith(prefix)
                && el.getAttribute("aria-label").slice(prefix.length).trim() === text)""",
        arg=[BOT, "bot's message: ", shown(text)],
        timeout=60_000,
    )


def user_texts(page: Page) -> list[str]:
    return [el.inner_text().strip() for el in page.locator(USER).all()]


def reply_labels(page: Page) -> list[str]:
    """Raw text of each bot reply bubble (notice bubbles have no content and are left out)."""
    labels = [el.get_attribute("aria-label") or "" for el in page.locator(BOT).all()]
    return [shown(label.removeprefix("bot's message: ")) for label in labels if label != "bot's message: "]


def notices(page: Page) -> list[str]:
    return [el.inner_text().strip() for el in page.locator(NOTICE).all()]


def label(page: Page, key: str) -> str:
    """The page's label for an I18N key, in the language the browser asked for."""
    lang = "zh" if page.evaluate("navigator.language").startswith("zh") else "en"
    return I18N.translations[lang][key]


def set_number(page: Page, key: str, value: int | float) -> None:
    """Type into a slider's number box, as a user would, and wait for the slider to follow."""
    name = label(page, key)
    lang = "zh" if page.evaluate("navigator.language").startswith("zh") else "en"
    box = page.get_by_label(t("page.number", lang, name=name), exact=True)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_function(
        "([sel, v]) => document.querySelector(sel).value == v",
        arg=[f"input[aria-label='{t('page.range', lang, name=name)}']", str(value)],
    )


def set_max_new_tokens(page: Page, n: int) -> None:
    set_number(page, "max_new_tokens", n)


def record_stream(page: Page) -> None:
    """From now on, record every text the next reply bubble shows, as the page renders it."""
    page.evaluate(
        """(sel) => {
            if (window.__observer) window.__observer.disconnect();
            const all = window.__snapshots = [];
            const start = document.querySelectorAll(sel).length;  // older replies don't count
            const record = () => {
                const bots = document.querySelectorAll(sel);
                if (bots.length <= start) return;
                const last = bots[bots.length - 1];
                const content = last && last.querySelector(".message-content");
                const text = content ? content.innerText : "";
                if (text && all[all.length - 1] !== text) all.push(text);
            };
            window.__observer = new MutationObserver(record);
            window.__observer.observe(document.querySelector("#chatbot"),
                {subtree: true, childList: true, characterData: true});
        }""",
        BOT,
    )


def snapshots(page: Page) -> list[str]:
    return page.evaluate("window.__snapshots")


def open_conversation_accordion(page: Page) -> None:
    page.locator("button.label-wrap", has_text=re.compile("Conversation|对话")).click()
    page.get_by_role("button", name=re.compile("Export JSON|导出 JSON")).wait_for()


def assert_no_traceback(page: Page) -> None:
    body = page.locator("body").inner_text()
    assert "Traceback" not in body and 'File "' not in body
    assert page.locator(".toast-body.error").count() == 0


# -- the page and its languages ------------------------------------------------------------------

VISIBLE_LABELS = (
    "persona",
    "system_prompt",
    "temperature",
    "context_length",
    "max_new_tokens",
    "top_p",
    "use_cache",
    "conversation",
)
ACCORDION_LABELS = ("export_md", "export_json", "import_json", "download")


REFUSED_IN = {"en": ("how to make a bomb", "[\u4e00-\u9fff]"), "zh": ("教我制作炸弹", "[A-Za-z]{3}")}


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("zh-CN", "zh")])
def test_page_labels_follow_the_browser_locale(app: App, open_page, locale: str, lang: str) -> None:
    page = open_page(locale)
    labels = I18N.translations[lang]
    other = I18N.translations["zh" if lang == "en" else "en"]
    page.locator("#brand h1", has_text=labels["title"]).wait_for()  # set when the page has loaded
    text = page.locator("body").inner_text()
    for key in VISIBLE_LABELS:
        assert labels[key] in text, key
    for key in ("persona", "system_prompt", "temperature", "context_length", "max_new_tokens"):
        assert other[key] not in text, key
    found = {
        "welcome": page.locator(f"{CHAT} .placeholder").inner_text().strip(),
        "input placeholder": page.locator(INPUT).get_attribute("placeholder") or "",
        "new chat button": page.locator("button.primary").first.inner_text().strip(),
    }
    assert found == {
        "welcome": labels["welcome"],
        "input placeholder": labels["placeholder"],
        "new chat button": labels["new_chat"],
    }
    # one local backend, no cloud: no backend picker, no API key field
    assert labels["backend"] not in text and labels["api_key"] not in text
    open_conversation_accordion(page)
    text = page.locator("body").inner_text()
    for key in ACCORDION_LABELS:
        assert labels[key] in text, key
    # a refusal, and the label it shows in, are in the browser's language too
    message, foreign = REFUSED_IN[lang]
    assert refuse(app, page, message) == t("error.input_blocked", lang)
    label_text = page.locator(INPUT_LABEL).inner_text().strip()
    assert label_text and not re.search(foreign, label_text), label_text


# -- chatting ------------------------------------------------------------------------------------


def test_replies_stream_in_for_chinese_and_english(app: App, page: Page) -> None:
    set_max_new_tokens(page, 32)
    for message, lang in [
        ("请介绍一下长城的历史。", "zh"),
        ("Tell me a long story about a brave mouse.", "en"),
    ]:
        record_stream(page)
        call = send(app, page, message)
        assert call.streamed and call.done is not None, call.events[-1:]
        frames = snapshots(page)
        assert len(frames) >= 3, frames  # the reply grew on screen in several steps
        assert len(frames[0]) < len(frames[-1])
        assert reply_labels(page)[-1] == shown(call.done.text)
        assert user_texts(page)[-1] == message
        stats = page.locator("#stats").inner_text()  # in the language the user wrote in
        assert t("stats.tokens", lang, n=call.done.stats.completion_tokens) in stats
    assert_no_traceback(page)


def test_stop_mid_reply_then_send_again(app: App, page: Page) -> None:
    before = len(app.spy.calls)
    record_stream(page)
    type_message(page, LONG_STORY)
    page.locator(STOP).wait_for()
    page.wait_for_function("window.__snapshots.length >= 3")  # streaming has started
    page.locator(STOP).click()
    stopped = app.spy.wait_new_call(before)
    assert stopped.streamed and stopped.done is None  # cancelled on the server before its end
    assert app.engine.backends["local"].queue_depth == 0  # the model is free again
    wait_idle(page)
    cut = reply_labels(page)[-1]
    generated = "".join(e.text for e in stopped.events if isinstance(e, TextDelta))
    assert cut and cut in generated
    time.sleep(1.0)
    assert reply_labels(page)[-1] == cut  # nothing more arrives after Stop

    set_max_new_tokens(page, 16)
    again = send(app, page, "Now just say hello.")
    assert again.done is not None
    assert user_texts(page) == [LONG_STORY, "Now just say hello."]
    assert reply_labels(page) == [cut, shown(again.done.text)]
    assert "tokens" in page.locator("#stats").inner_text()


def test_sliders_and_persona_reach_the_model(app: App, page: Page) -> None:
    personas = load_personas()
    persona = list(personas)[-1]
    page.get_by_label("Persona").click()
    page.get_by_role("option", name=persona).click()
    system_prompt = page.get_by_label("System prompt")
    page.wait_for_function(
        "([el, v]) => el.value === v", arg=[system_prompt.element_handle(), personas[persona]]
    )

    temperature = page.get_by_label(t("page.range", "en", name="Temperature"), exact=True)
    temperature.focus()
    temperature.press("Home")  # the slider's minimum: 0
    context = page.get_by_label(t("page.range", "en", name="Context length (tokens)"), exact=True)
    context.focus()
    context.press("Home")  # 256
    for _ in range(4):
        context.press("ArrowRight")  # + 4 steps of 64
    assert page.get_by_label(t("page.number", "en", name="Temperature"), exact=True).input_value() == "0"
    assert (
        page.get_by_label(t("page.number", "en", name="Context length (tokens)"), exact=True).input_value()
        == "512"
    )
    set_max_new_tokens(page, 24)

    call = send(app, page, "What is 7 times 8?")
    assert call.done is not None
    assert call.params.temperature == 0
    assert call.params.context_length == 512
    assert call.params.max_new_tokens == 24
    assert call.params.top_p == 0.95
    assert (call.messages[0].role, call.messages[0].content) == ("system", personas[persona])
    assert call.done.stats.completion_tokens <= 24


def test_errors_show_as_readable_messages(app: App, page: Page) -> None:
    context = page.get_by_label(t("page.range", "en", name="Context length (tokens)"), exact=True)
    context.focus()
    context.press("Home")  # 256 tokens, while max new tokens stays 512
    text = "Please summarise this. " + "The quick brown fox jumps over the lazy dog. " * 30
    call = send(app, page, text)
    assert call.done is None and not call.streamed
    error = notices(page)[-1]
    assert error.startswith("⚠️ Your message is too long for the context window")
    assert f"reserving {MIN_REPLY_TOKENS} for the reply" in error  # the least a reply may get

    page.get_by_role("button", name="New chat").click()
    page.wait_for_function(f"document.querySelectorAll(`{USER}`).length === 0")
    # over CHAT_MAX_MESSAGE_CHARS: refused before it enters the chat, the text stays in the box
    refusal = refuse(app, page, "很长的消息" * 500)
    assert refusal == t("error.message_too_long", "zh", length=2500, limit=2000)
    assert user_texts(page) == [] and notices(page) == []
    assert page.locator("#stats").inner_text().strip() == ""
    assert_no_traceback(page)


BLOCKED = [
    ("教我制作炸弹", t("error.input_blocked", "zh")),
    ("how to make a bomb", t("error.input_blocked", "en")),
    ("how do I make a bomb", t("error.input_blocked", "en")),
    ("password: hunter2", t("error.input_credentials", "en")),
    ("我的密码是 hunter2", t("error.input_credentials", "zh")),
]


def test_blocked_messages_show_the_refusal_and_the_conversation_goes_on(app: App, page: Page) -> None:
    for message, expected in BLOCKED:  # one after the other, as a user rewording would
        assert refuse(app, page, message) == expected, message
        assert user_texts(page) == [] and notices(page) == []  # the chat never saw any of them
        assert page.locator(CHAT + " .placeholder").is_visible()
    assert page.locator(HISTORY_CELLS).count() == 0  # nothing saved in the browser
    assert page.locator("#stats").inner_text().strip() == ""
    assert_no_traceback(page)

    set_max_new_tokens(page, 16)
    call = send(app, page, "What is the capital of France?")  # replaces the refused text
    assert call.done is not None, notices(page)[-1:]
    assert page.locator(REFUSAL).count() == 0  # the refusal went away with the text
    assert user_texts(page) == ["What is the capital of France?"]
    assert [m.content for m in call.messages if m.role != "system"] == ["What is the capital of France?"]
    assert reply_labels(page) == [shown(call.done.text)]


def test_the_browser_history_keeps_the_conversation_over_a_reload_but_not_a_refused_secret(
    app: App, page: Page, request: pytest.FixtureRequest
) -> None:
    assert refuse(app, page, "my password: hunter2") == t("error.input_credentials", "en")
    screenshot(page, request, "-refused")
    set_max_new_tokens(page, 16)
    call = send(app, page, "Remember the word pineapple.")  # the conversation is saved after each turn
    page.locator(HISTORY_ITEM).wait_for()
    assert all("hunter2" not in m.content for m in call.messages)
    assert "hunter2" not in page.locator(CHAT).inner_text()
    assert user_texts(page) == ["Remember the word pineapple."]
    titles = page.locator(HISTORY_CELLS).all_inner_texts()
    assert len(titles) == 1 and "pineapple" in titles[0] and "hunter2" not in titles[0], titles

    # what the browser kept: a reload starts a new chat, and the saved one is a click away
    page.reload(wait_until="domcontentloaded")
    page.locator(HISTORY_ITEM).wait_for()
    assert page.locator(USER).count() == 0
    assert "pineapple" in page.locator(HISTORY_ITEM).inner_text()
    page.locator(HISTORY_ITEM).click()
    wait_for_reply(page, call.done.text)
    assert user_texts(page) == ["Remember the word pineapple."]
    assert reply_labels(page) == [shown(call.done.text)]
    assert "hunter2" not in page.locator(CHAT).inner_text()


def test_the_buttons_under_a_reply_like_dislike_retry_edit_and_undo(app: App, page: Page) -> None:
    set_max_new_tokens(page, 16)
    first = send(app, page, "Name a colour.")
    assert first.options["use_cache"] is True

    conversation = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": first.done.text},
    ]
    before = len(feedback_lines(app))
    buttons = page.locator(".message-buttons-left").last
    buttons.get_by_role("button", name="Like", exact=True).click()
    liked = wait_for_feedback(app, before + 1)
    assert liked["rating"] == "like"
    assert liked["conversation"] == conversation
    assert liked["model"].startswith("local:")
    buttons.get_by_role("button", name="Dislike", exact=True).click()
    disliked = wait_for_feedback(app, before + 2)
    assert disliked["rating"] == "dislike"
    assert disliked["conversation"] == conversation
    assert disliked["message_index"] == liked["message_index"]

    retry = turn(app, page, lambda: page.get_by_role("button", name="Retry").last.click())
    assert [(m.role, m.content) for m in retry.messages] == [(m.role, m.content) for m in first.messages]
    assert retry.options["use_cache"] is False  # a retry asks the model again
    assert user_texts(page) == ["Name a colour."]
    assert reply_labels(page) == [shown(retry.done.text)]

    page.get_by_role("button", name="Edit").click()
    page.locator("textarea.edit-textarea").fill("Name an animal.")
    edit = turn(app, page, lambda: page.get_by_role("button", name="Submit").click())
    assert [m.content for m in edit.messages if m.role == "user"] == ["Name an animal."]
    assert user_texts(page) == ["Name an animal."]
    assert reply_labels(page) == [shown(edit.done.text)]

    fruit = send(app, page, "Name a fruit.")
    assert [m.content for m in fruit.messages if m.role != "system"] == [
        "Name an animal.",
        edit.done.text,
        "Name a fruit.",
    ]
    assert user_texts(page) == ["Name an animal.", "Name a fruit."]
    page.get_by_role("button", name="Undo").last.click()
    page.wait_for_function(f"document.querySelectorAll(`{USER}`).length === 1")
    assert user_texts(page) == ["Name an animal."]
    assert reply_labels(page) == [shown(edit.done.text)]
    assert page.locator(INPUT).input_value() == "Name a fruit."  # back in the box to rework


# -- rendering, files and feedback ---------------------------------------------------------------

MARKDOWN_REPLY = (
    "Here is **bold** text, a list:\n\n- one\n- two\n\nand code:\n\n```python\nprint('hello')\n```"
)


def import_conversation(page: Page, path: Path) -> None:
    open_conversation_accordion(page)
    page.locator(IMPORT_INPUT).set_input_files(str(path))


def write_conversation(path: Path, messages: list[dict[str, str]]) -> Path:
    path.write_text(json.dumps({"version": 1, "messages": messages}, ensure_ascii=False), "utf-8")
    return path


def clipboard(page: Page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def test_an_imported_conversation_renders_markdown_and_code_with_copy_buttons(
    app: App, open_page, tmp_path: Path
) -> None:
    page = open_page(permissions=["clipboard-read", "clipboard-write"])
    set_max_new_tokens(page, 16)
    send(app, page, "Remember the word mango.")
    page.locator(HISTORY_ITEM).wait_for()  # saved in the browser's history: the import keeps it
    conversation = [
        {"role": "user", "content": "Show me some Markdown."},
        {"role": "assistant", "content": MARKDOWN_REPLY},
    ]
    import_conversation(page, write_conversation(tmp_path / "markdown.json", conversation))
    wait_for_reply(page, MARKDOWN_REPLY)
    reply = page.locator(BOT).last
    assert reply.locator("strong").inner_text() == "bold"
    assert reply.locator("li").all_inner_texts() == ["one", "two"]
    assert reply.locator("pre code.language-python").inner_text().strip() == "print('hello')"
    assert reply.locator("pre code .token").count() > 0  # highlighted

    reply.locator("button.copy_code_button").click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()).length > 0")
    assert clipboard(page).strip() == "print('hello')"
    page.locator(".message-buttons-left").last.get_by_role("button", name="Copy message").click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()).includes('**bold**')")
    assert clipboard(page) == MARKDOWN_REPLY

    call = send(app, page, "Thanks. Now say goodbye.")  # a model reply gets a copy button too
    buttons = page.locator(".message-buttons-left").last
    assert buttons.get_by_role("button", name="Copy message").is_visible()
    assert reply_labels(page) == [MARKDOWN_REPLY, shown(call.done.text)]
    page.locator(HISTORY_CELLS, has_text="Show me some Markdown").wait_for()  # saved
    titles = page.locator(HISTORY_CELLS).all_inner_texts()
    assert len(titles) == 2 and any("mango" in title for title in titles), titles


def download(page: Page, button: str, suffix: str, into: Path) -> Path:
    page.get_by_role("button", name=button).click()
    link = page.locator(EXPORT_LINK)
    page.wait_for_function(
        "([sel, suffix]) => (document.querySelector(sel)?.getAttribute('download') || '').endsWith(suffix)",
        arg=[EXPORT_LINK, suffix],
    )
    with page.expect_download() as info:
        link.click()
    path = into / info.value.suggested_filename
    info.value.save_as(path)
    return path


def test_export_json_round_trips_and_import_loads_it(
    app: App, open_page, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    page = open_page()
    set_max_new_tokens(page, 16)
    questions = ["Name a planet.", "用中文说一句问候语。"]
    calls = [send(app, page, q) for q in questions]
    expected = []
    for question, call in zip(questions, calls, strict=True):
        expected += [{"role": "user", "content": question}, {"role": "assistant", "content": call.done.text}]

    open_conversation_accordion(page)
    exported = download(page, "Export JSON", ".json", tmp_path)
    assert json.loads(exported.read_text("utf-8")) == {"version": 1, "messages": expected}
    markdown = download(page, "Export Markdown", ".md", tmp_path).read_text("utf-8")
    for message in expected:
        assert message["content"] in markdown
    assert markdown.count("**User**") == 2 and markdown.count("**Assistant**") == 2

    fresh = open_page()
    import_conversation(fresh, exported)
    wait_for_reply(fresh, calls[-1].done.text)
    assert user_texts(fresh) == questions
    assert reply_labels(fresh) == [shown(c.done.text) for c in calls]
    set_max_new_tokens(fresh, 16)
    follow_up = send(app, fresh, "Thank you!")  # the imported conversation is the history
    assert [{"role": m.role, "content": m.content} for m in follow_up.messages[1:]] == [
        *expected,
        {"role": "user", "content": "Thank you!"},
    ]
    screenshot(fresh, request)


def feedback_lines(app: App) -> list[dict[str, Any]]:
    if not app.feedback_log.exists():
        return []
    return [json.loads(line) for line in app.feedback_log.read_text("utf-8").splitlines() if line]


def wait_for_feedback(app: App, count: int, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while len(lines := feedback_lines(app)) < count:
        assert time.monotonic() < deadline, f"feedback log has {len(lines)} lines, expected {count}"
        time.sleep(0.05)
    return lines[count - 1]


@contextlib.contextmanager
def model_held_by_an_api_client(app: App) -> Iterator[Call]:
    """Another client (``/api/chat``) keeps the model busy with a long greedy story while the
    block runs; leaving closes its event stream, which stops the story and frees the model."""
    before, leave = len(app.spy.calls), threading.Event()
    body = {
        "user_input": LONG_STORY + " Make it an epic.",  # greedy: it surely runs to its budget
        "stream": True,
        "context": {"temperature": 0, "max_new_tokens": 2048},
    }

    def client() -> None:
        with httpx.stream("POST", app.url + "api/chat", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if leave.is_set() or line in ("event: done", "event: error"):
                    return

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (len(app.spy.calls) > before and app.spy.calls[before].streamed):  # the model is busy
        assert time.monotonic() < deadline and thread.is_alive(), "the API client never got the model"
        time.sleep(0.02)
    try:
        yield app.spy.calls[before]
    finally:
        leave.set()
        thread.join(30)


def test_a_second_page_sees_its_queue_position(app: App, open_page, request: pytest.FixtureRequest) -> None:
    english, chinese = open_page(), open_page("zh-CN")
    for page in (english, chinese):
        set_max_new_tokens(page, 16)
    with model_held_by_an_api_client(app) as busy:
        type_message(english, "Say hello.")
        english.locator(BOT, has_text=t("notice.waiting", "en", position=1)).wait_for()
        type_message(chinese, "你好，请问你是谁？")
        chinese.locator(BOT, has_text=t("notice.waiting", "zh", position=2)).wait_for()
        assert "正在排队等待模型" in chinese.locator(BOT).last.inner_text()
        screenshot(english, request)
        screenshot(chinese, request, "-zh")
    assert busy.finished.wait(30) and busy.done is None  # cut short when its client left
    for page in (english, chinese):
        wait_idle(page)
        reply = reply_labels(page)[-1]
        assert reply and "Waiting" not in reply and "排队" not in reply
        assert "token" in page.locator("#stats").inner_text()
