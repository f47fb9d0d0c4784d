"""``--tts browser``: the page reads replies with the browser's own speech synthesis.

Real voices: Debian's Chromium speaks through speech-dispatcher when started with
``--enable-speech-dispatcher``. The browser gets a speech-dispatcher of its own (a private
configuration and socket folder, through XDG_CONFIG_HOME and XDG_RUNTIME_DIR) with two voices,
English and Mandarin, both Debian's espeak-ng: its module synthesises each utterance, writes the
voice, the number of audio bytes and the words to a log the tests read, then waits as long as the
sound lasts (a machine without a sound card would otherwise finish at once). So an utterance
starts, is heard for its length, and ends or is cancelled as on a user's machine. The page's
side is seen through an init script that notes each utterance handed to speechSynthesis (words,
language, rate, the events it gets) and passes it on unchanged.

The replies come from a scripted backend: what is read must be compared with known words, in a
known script, with a notice, a code block and links in the reply to be left out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from guard_fakes import ScriptedBackend
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from service_support import serve, service_engine
from support import CHROMIUM, CHROMIUM_ARGS, INPUT, open_chat

from chat.backends.base import Chunk
from chat.i18n import t
from chat.messages import GenerationParams, Message

pytestmark = pytest.mark.browser

SPEAKER = "#chatbot .voice-read"
STATUS = "#voice-status"
WAIT = 60_000  # ms: generous, the suite runs beside other workers on 2 cores

ENGLISH = (
    "**Hi**, read [the guide](https://example.com/guide): https://example.com/guide\n\n"
    "```python\nprint('not read')\n```\n\nThat is *all*."
)
CHINESE = "**欢迎**光临！"
STORY = " ".join(f"Sentence {n} of a long story that goes on and on." for n in range(1, 41))
REPLIES = {"english": (ENGLISH, "length"), "chinese": (CHINESE, "stop"), "story": (STORY, "stop")}
# what the page reads: the words as shown, without the length notice, the code or the addresses
READ = {"english": "Hi, read the guide:\nThat is all.", "chinese": "欢迎光临！"}


class Replies(ScriptedBackend):
    """Answers each question in REPLIES with its reply (and finish reason, "length" adds a notice)."""

    def __init__(self) -> None:
        super().__init__([])

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        reply, self.finish = next(
            answer for question, answer in REPLIES.items() if question in messages[-1].content
        )
        self.chunks = [reply]
        return super().stream(messages, params, cancel=cancel, api_key=api_key)


@pytest.fixture(scope="module")
def tts_url() -> Iterator[str]:
    with serve(service_engine(Replies()), tts="browser", stt="off") as url:
        yield url


# The voices' module runs this for each utterance: voice and rate as arguments, the words on stdin.
SPEAK = """#!/bin/sh
words=$(cat)
bytes=$(printf %s "$words" | espeak-ng -v "$1" -s "${2%.*}" --stdin --stdout | wc -c)
printf '%s\\t%s\\t%s\\n' "$1" "$bytes" "$(printf %s "$words" | tr '\\n' ' ')" >> "{log}"
sleep "$((bytes / 44100)).$((bytes % 44100 * 10 / 44100))"  # 22050 Hz, 16-bit: as long as it sounds
"""
MODULE = """Debug 0
GenericExecuteSynth "printf %s \\'$DATA\\' | {speak} $VOICE $RATE"
GenericCmdDependency "espeak-ng"
GenericRateAdd 175
GenericRateMultiply 1
GenericLanguage "en" "en-us" "utf-8"
GenericLanguage "zh" "cmn" "utf-8"
AddVoice "en" "MALE1" "en-us"
AddVoice "zh" "MALE1" "cmn"
"""
DISPATCHER = """LogLevel 3
LogDir "{folder}"
Timeout 5
AudioOutputMethod "alsa"
AudioALSADevice "null"
AddModule "espeak-ng-log" "sd_generic" "{module}"
DefaultModule espeak-ng-log
"""


class Dispatcher:
    """A private speech-dispatcher's configuration, and the log of what its voices said."""

    def __init__(self, folder: Path) -> None:
        for program in ("speech-dispatcher", "espeak-ng"):
            if shutil.which(program) is None:
                pytest.fail(f"{program} is missing: apt-get install it (.ci/run does)", pytrace=False)
        self.config, self.runtime, self.log = folder / "config", folder / "runtime", folder / "spoken.tsv"
        settings = self.config / "speech-dispatcher"
        settings.mkdir(parents=True)
        self.runtime.mkdir(mode=0o700)
        self.log.touch()
        speak = settings / "speak.sh"
        speak.write_text(SPEAK.replace("{log}", str(self.log)), encoding="utf-8")
        speak.chmod(0o755)
        module = settings / "espeak-ng-log.conf"
        module.write_text(MODULE.format(speak=speak), encoding="utf-8")
        dispatcher = DISPATCHER.format(folder=folder, module=module)
        (settings / "speechd.conf").write_text(dispatcher, encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        folders = {"XDG_CONFIG_HOME": str(self.config), "XDG_RUNTIME_DIR": str(self.runtime)}
        return {**os.environ, **folders}

    def spoken(self) -> list[tuple[str, int, str]]:
        """(voice, bytes of audio, words) for each piece the engine has spoken."""
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [(v, int(n), words.strip()) for v, n, words in (line.split("\t", 2) for line in lines)]

    def stop(self) -> None:
        """End the daemon the browser started (it would end itself a few seconds later)."""
        for pid_file in self.runtime.glob("speech-dispatcher/pid/*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


@pytest.fixture(scope="module")
def dispatcher(tmp_path_factory: pytest.TempPathFactory) -> Dispatcher:
    return Dispatcher(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="module")
def driver() -> Iterator[Playwright]:
    """One Playwright for the module's two browsers (a second one cannot start beside it)."""
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def speaking_browser(driver: Playwright, dispatcher: Dispatcher) -> Iterator[Browser]:
    """Chromium speaking through the private speech-dispatcher; the shared browser has no voices."""
    args = [*CHROMIUM_ARGS, "--enable-speech-dispatcher"]
    chromium = driver.chromium.launch(executable_path=CHROMIUM, args=args, env=dispatcher.env)
    yield chromium
    chromium.close()
    dispatcher.stop()


# Each utterance the page hands to speechSynthesis, with its events; the calls go through unchanged.
RECORD = """(() => {
  const spoken = (window.__spoken = []);
  window.__cancels = 0;
  const speak = speechSynthesis.speak.bind(speechSynthesis);
  const cancel = speechSynthesis.cancel.bind(speechSynthesis);
  speechSynthesis.speak = (utterance) => {
    const entry = { text: utterance.text, lang: utterance.lang, rate: utterance.rate, events: [] };
    for (const name of ["start", "end", "error"]) {
      utterance.addEventListener(name, (e) => {
        entry.events.push(e.error ? `${name}:${e.error}` : name);
        if (name === "start") entry.speaking = speechSynthesis.speaking; // the engine's own word
      });
    }
    spoken.push(entry);
    speak(utterance);
  };
  speechSynthesis.cancel = () => { window.__cancels += 1; cancel(); };
})()"""


def open_page(browser: Browser, url: str, locale: str) -> Page:
    page = browser.new_context(locale=locale).new_page()
    page.add_init_script(RECORD)
    open_chat(page, url)
    return page


def ask(page: Page, question: str) -> None:
    """Send a question and wait for its reply's speaker button."""
    replies = page.locator(SPEAKER).count()
    page.fill(INPUT, question)
    page.press(INPUT, "Enter")
    page.wait_for_function(f"document.querySelectorAll({SPEAKER!r}).length > {replies}", timeout=WAIT)


def utterances(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("window.__spoken")


def wait_for_event(page: Page, index: int, event: str) -> dict[str, Any]:
    page.wait_for_function(
        f"window.__spoken.length > {index} && window.__spoken[{index}].events.includes({event!r})",
        timeout=WAIT,
    )
    return utterances(page)[index]


def heard(dispatcher: Dispatcher, voice: str, words: str) -> list[tuple[str, int, str]]:
    return [s for s in dispatcher.spoken() if s[0] == voice and words in s[2]]


@pytest.fixture(scope="module")
def page(speaking_browser: Browser, tts_url: str) -> Iterator[Page]:
    """The chat page in English, in the speaking browser, shared by the module's tests."""
    page = open_page(speaking_browser, tts_url, "en-US")
    yield page
    page.context.close()


def test_the_speaker_reads_the_reply_in_its_language_and_stops(page: Page, dispatcher: Dispatcher) -> None:
    page.evaluate("window.__spoken.length = 0")
    page.uncheck("#voice-read-all")  # only the speaker reads here
    voices = page.evaluate("""() => new Promise((resolve) => {
      const list = () => speechSynthesis.getVoices().map((v) => v.lang);
      if (list().length) resolve(list());
      speechSynthesis.addEventListener("voiceschanged", () => resolve(list()));
    })""")
    assert sorted(voices) == ["en", "zh"]  # the engine's real voices

    ask(page, "english")
    speaker = page.locator(SPEAKER).last
    speaker.click()
    reading = wait_for_event(page, 0, "start")
    assert (reading["text"], reading["lang"], reading["rate"]) == (READ["english"], "en-US", 1)
    assert reading["speaking"]
    wait_for_event(page, 0, "end")
    page.wait_for_selector(f"{SPEAKER}[aria-pressed='false']")  # the end of the speech frees it
    _, audio, words = heard(dispatcher, "en-us", "read the guide")[-1]
    assert "That is all" in words and "print" not in words and "http" not in words
    assert audio > 44100  # over a second of sound

    ask(page, "story")  # long enough to be still speaking when Stop is pressed
    speaker = page.locator(SPEAKER).last
    speaker.click()
    assert wait_for_event(page, 1, "start")["text"] == STORY
    assert speaker.get_attribute("aria-pressed") == "true"  # for the 100 s the story lasts
    speaker.click()  # the second press stops it
    assert wait_for_event(page, 1, "error:interrupted")["events"] == ["start", "error:interrupted"]
    assert page.evaluate("window.__cancels") >= 1 and not page.evaluate("speechSynthesis.speaking")
    assert speaker.get_attribute("aria-pressed") == "false"
    assert page.inner_text(STATUS) == ""


def test_every_completed_reply_is_read_once(page: Page, dispatcher: Dispatcher) -> None:
    page.evaluate("window.__spoken.length = 0")
    page.check("#voice-read-all")
    ask(page, "chinese")
    reading = wait_for_event(page, 0, "start")  # nothing left queued in the engine holds it back
    assert (reading["text"], reading["lang"]) == (READ["chinese"], "zh-CN")
    ask(page, "english")  # a new reply takes over from one still being read
    reading = wait_for_event(page, 1, "end")
    assert (reading["text"], reading["lang"]) == (READ["english"], "en-US")
    assert [u["text"] for u in utterances(page)] == [READ["chinese"], READ["english"]]  # once each
    assert heard(dispatcher, "cmn", "欢迎光临")  # the Mandarin voice said the Chinese reply
    assert page.inner_text(STATUS) == ""


# The end of a reply as Gradio can draw it: the stop button goes, and the reply's row comes a
# moment later. Staged in the page's own chat list, since Gradio's timing cannot be forced.
STAGE_STOP = """() => {
  const stop = document.createElement("button");
  stop.className = "stop-button staged";
  stop.textContent = "stop";
  document.querySelector("#chat-input").append(stop);
}"""
STAGE_QUESTION = """() => {
  document.querySelector("#chat-input .stop-button.staged").remove();
  const replies = document.querySelectorAll("#chatbot .message-buttons-left");
  const question = document.createElement("div");
  question.className = "message-row user-row staged";
  question.textContent = "A question whose reply is not drawn yet";
  replies[replies.length - 1].parentElement.append(question);
}"""
STAGE_REPLY = """() => {
  const list = document.querySelector("#chatbot .message-row.user-row.staged").parentElement;
  const row = document.createElement("div");
  row.className = "message-row bot-row staged";
  row.innerHTML = '<div data-testid="bot">The staged reply.</div>';
  const buttons = document.createElement("div");
  buttons.className = "message-buttons-left staged";
  buttons.innerHTML = '<div class="icon-button-wrapper"></div>';
  list.append(row, buttons);
}"""


def test_a_reply_drawn_after_the_stop_button_goes_is_the_one_read(page: Page) -> None:
    page.evaluate("speechSynthesis.cancel(); window.__spoken.length = 0")
    page.check("#voice-read-all")
    ask(page, "chinese")  # the previous reply: on the page, read, and done with
    wait_for_event(page, 0, "start")
    page.evaluate("speechSynthesis.cancel(); window.__spoken.length = 0")
    try:
        page.evaluate(STAGE_STOP)
        page.wait_for_timeout(700)  # two looks of the page's 300 ms timer see a reply running
        page.evaluate(STAGE_QUESTION)
        page.wait_for_timeout(1200)  # four looks: the previous reply is not read in its place
        assert utterances(page) == []
        page.evaluate(STAGE_REPLY)
        assert wait_for_event(page, 0, "start")["text"] == "The staged reply."
    finally:
        page.evaluate(
            "speechSynthesis.cancel(); document.querySelectorAll('.staged').forEach((n) => n.remove())"
        )


def test_a_browser_without_voices_says_so_in_the_pages_language(driver: Playwright, tts_url: str) -> None:
    """Chromium without speech-dispatcher lists no voices and fails each utterance
    ("synthesis-failed"); the page says so in its language instead of staying silent."""
    silent = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = open_page(silent, tts_url, "zh-CN")
        ask(page, "chinese")
        speaker = page.locator(SPEAKER).last
        speaker.click()
        page.wait_for_selector(f"{STATUS}.voice-error", timeout=WAIT)
        assert page.inner_text(STATUS) == t("voice.page.no_voice", "zh")
        assert wait_for_event(page, 0, "error:synthesis-failed")["text"] == READ["chinese"]
        assert speaker.get_attribute("aria-pressed") == "false"
        assert "start" not in utterances(page)[0]["events"]
    finally:
        silent.close()
