"""Voice through the server: OpenAI's audio routes on the shared app (real espeak-ng, real
Whisper base), the OpenAI-compatible providers pointed at those routes (a real HTTP service on
loopback, no mock), the door's token and rate limit on them, and the page's microphone and
speaker buttons in Chromium, whose fake microphone plays a WAV that espeak-ng made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from guard_fakes import ScriptedBackend
from playwright.sync_api import Browser, sync_playwright
from prometheus_client.parser import text_string_to_metric_families
from service_support import serve, service_engine
from support import CHROMIUM, CHROMIUM_ARGS, INPUT

from chat.errors import Unavailable
from chat.service.errors import from_chat_error
from chat.voice.audio import decode, wav_bytes
from chat.voice.desk import Voice
from chat.voice.espeak import Espeak
from chat.voice.remote import RemoteSpeaker, RemoteTranscriber

SENTENCE = "Please book a table by the window for dinner."
MIC = "#voice-mic"
STATUS = "#voice-status"


@pytest.fixture(scope="module")
def spoken() -> bytes:
    return Voice(None, Espeak()).say(SENTENCE).audio


def transcribe(url: str, data: bytes, **form: str) -> httpx.Response:
    files = {"file": ("q.wav", data, "audio/wav")}
    return httpx.post(f"{url}v1/audio/transcriptions", files=files, data=form, timeout=60)


def test_transcription_formats(app_url: str, spoken: bytes) -> None:
    verbose = transcribe(app_url, spoken, language="en", response_format="verbose_json")
    assert verbose.status_code == 200, verbose.text
    body = verbose.json()
    assert "book a table by the window" in body["text"].lower()
    assert body["language"] == "en" and 2 < body["duration"] < 3
    assert body["segments"] and body["segments"][0]["end"] > body["segments"][0]["start"]
    assert verbose.headers["x-request-id"]


def test_openai_providers_round_trip_through_this_server(app_url: str) -> None:
    """The remote providers (any OpenAI-compatible service) against this server's own routes."""
    base = app_url + "v1"
    remote = Voice(RemoteTranscriber(base, "whisper-1"), RemoteSpeaker(base, "tts-1"))
    speech = remote.say("Please send me the invoice.", response_format="wav")
    assert speech.media_type == "audio/wav"
    heard = remote.hear(speech.audio, "invoice.wav", "en")
    assert "invoice" in heard.text.lower() and heard.language == "en"


def test_a_speech_service_that_is_down_is_the_chat_backends_unavailable(spoken: bytes) -> None:
    """Nothing listens on port 9 (discard): the provider says so as a chat backend would (503)."""
    down = Voice(RemoteTranscriber("http://127.0.0.1:9/v1", ""), RemoteSpeaker("http://127.0.0.1:9/v1", ""))
    with pytest.raises(Unavailable) as heard:
        down.hear(spoken, "q.wav", "en")
    with pytest.raises(Unavailable):
        down.say("hello")
    assert from_chat_error(heard.value).status == 503 and "127.0.0.1" not in heard.value.user_message("en")


@pytest.mark.parametrize(
    ("data", "status", "kind", "zh"),
    [
        (b"not a recording at all", 415, "not_audio", "无法读取"),
        (wav_bytes(bytes(16000), 8000), 422, "no_speech", "没有听到"),
        (
            wav_bytes((np.sin(np.arange(8000 * 301) * 0.3) * 3000).astype(np.int16).tobytes(), 8000),
            422,
            "audio_too_long",
            "300 秒",
        ),
    ],
    ids=["not-audio", "silence", "too-long"],
)
def test_bad_audio_is_a_clear_4xx(app_url: str, data: bytes, status: int, kind: str, zh: str) -> None:
    answer = transcribe(app_url, data, language="zh-CN")
    assert answer.status_code == status
    assert answer.json()["error"]["type"] == kind and zh in answer.json()["error"]["message"]


def test_too_large_and_malformed_requests(app_url: str) -> None:
    big = transcribe(app_url, bytes(25 * 1024 * 1024 + 1))
    assert big.status_code == 413 and "25 MB" in big.json()["error"]["message"]
    no_file = httpx.post(f"{app_url}v1/audio/transcriptions", data={"language": "en"}, timeout=30)
    assert no_file.status_code == 400 and "file" in no_file.json()["error"]["message"]
    bad_format = transcribe(app_url, b"x", response_format="srt")
    assert bad_format.status_code == 400 and "verbose_json" in bad_format.json()["error"]["message"]
    speech = f"{app_url}v1/audio/speech"
    empty = httpx.post(speech, json={"input": ""}, headers={"Accept-Language": "zh-CN"}, timeout=30)
    assert empty.status_code == 400 and "input" in empty.json()["error"]["message"]
    bad_voice = httpx.post(speech, json={"input": "你好", "voice": "nobody"}, timeout=30)
    assert bad_voice.status_code == 400 and "未知的声音" in bad_voice.json()["error"]["message"]


def test_speech_is_mp3_by_default_and_reads_chinese(app_url: str) -> None:
    answer = httpx.post(
        f"{app_url}v1/audio/speech", json={"input": "我想喝一杯咖啡。", "voice": "alloy"}, timeout=30
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/mpeg"
    assert 1.5 < decode(answer.content, "a.mp3", 60).seconds < 6


def test_audio_routes_need_the_token_and_spend_the_rate_limit() -> None:
    engine = service_engine(ScriptedBackend(["ok"]))
    with serve(engine, full=False, rate_limit=3, api_token="s3cret") as url:  # the 401 spends one too
        speech, auth = f"{url}v1/audio/speech", {"Authorization": "Bearer s3cret"}
        assert httpx.post(speech, json={"input": "hi"}, timeout=30).status_code == 401
        codes = [
            httpx.post(speech, json={"input": "hi"}, headers=auth, timeout=30).status_code for _ in range(3)
        ]
    assert codes == [200, 200, 429]


def voice_metrics(url: str) -> dict[str, float]:
    """The ``chat_voice_*`` samples on ``/metrics``, keyed ``name{label=value,...}``."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name.startswith("chat_voice_"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
                if "le" not in sample.labels:
                    found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def test_voice_requests_are_counted_in_metrics(app_url: str, spoken: bytes) -> None:
    """One transcription, one refused transcription and one speech request move the voice series
    by exactly what they did (the shared app's other requests run before or after, not during)."""
    before = voice_metrics(app_url)
    assert transcribe(app_url, spoken, language="en").status_code == 200
    assert transcribe(app_url, spoken, response_format="srt").status_code == 400
    said = httpx.post(f"{app_url}v1/audio/speech", json={"input": "Good morning."}, timeout=30)
    assert said.status_code == 200
    after = voice_metrics(app_url)
    moved = {key: after[key] - before.get(key, 0.0) for key in after}

    assert moved["chat_voice_requests_total{outcome=ok,route=transcriptions}"] == 1
    assert moved["chat_voice_requests_total{outcome=client_error,route=transcriptions}"] == 1
    assert moved["chat_voice_requests_total{outcome=ok,route=speech}"] == 1
    assert moved["chat_voice_requests_total{outcome=server_error,route=speech}"] == 0
    assert 2 < moved["chat_voice_audio_seconds_total{}"] < 3  # the sentence, not the refused upload
    assert moved["chat_voice_characters_total{}"] == len("Good morning.")
    assert moved["chat_voice_duration_seconds_count{route=transcriptions}"] == 2
    assert moved["chat_voice_duration_seconds_count{route=speech}"] == 1
    assert moved["chat_voice_duration_seconds_sum{route=transcriptions}"] > 0


# -- the page -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory, spoken: bytes) -> Path:
    """What the fake microphone plays, from the start at each recording: 0.8 s of silence, then
    the sentence (a short recording hears only the silence)."""
    pcm = np.frombuffer(decode(spoken, "s.wav", 60).samples.tobytes(), np.float32)
    lead = np.zeros(12800, np.float32)
    samples = (np.concatenate([lead, pcm]) * 32767).astype(np.int16).tobytes()
    path = tmp_path_factory.mktemp("voice") / "microphone.wav"
    path.write_bytes(wav_bytes(samples, 16000))
    return path


@pytest.fixture(scope="module")
def voice_browser(microphone: Path) -> Iterator[Browser]:
    """Chromium with a fake microphone: the shared fixture's browser has none."""
    fake = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    fake.append(f"--use-file-for-fake-audio-capture={microphone}%noloop")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *fake])
        yield chromium
        chromium.close()


def record(page, seconds: float) -> httpx.Response:  # noqa: ANN001 - Playwright's Page
    with page.expect_response(lambda r: "/v1/audio/transcriptions" in r.url, timeout=60_000) as answer:
        page.click(MIC)
        page.wait_for_selector(f"{MIC}[aria-pressed='true']")
        page.wait_for_timeout(seconds * 1000)
        page.click(MIC)
    return answer.value


# The next play() presses the playing speaker in the same task: a user's Stop that lands between
# the sound's arrival and its start. The browser's own play() and pause() run unchanged.
STOP_AT_PLAY = """(() => {
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    const started = play.call(this);
    HTMLMediaElement.prototype.play = play;
    started.catch((error) => { window.__playInterrupted = error.name; });
    document.querySelector("#chatbot .voice-read[aria-pressed='true']").click();
    return started;
  };
})()"""


def test_microphone_fills_the_box_and_replies_are_read(app_url: str, voice_browser: Browser) -> None:
    context = voice_browser.new_context(locale="en-US")
    page = context.new_page()
    try:
        page.goto(app_url)
        page.wait_for_selector(MIC)
        assert page.get_attribute(MIC, "aria-label") == "Speak a message"

        assert record(page, 0.5).status == 422  # only the lead-in silence
        page.wait_for_selector(f"{STATUS}:has-text('No speech was heard')")
        assert page.input_value(INPUT) == ""

        assert record(page, 3.3).status == 200  # the words land in the box, to edit before sending
        page.wait_for_function(f"document.querySelector({INPUT!r}).value.includes('window for dinner')")
        assert page.locator("#chatbot [data-testid='user']").count() == 0  # not sent
        page.fill(INPUT, "")

        page.check("#voice-send-now")
        page.check("#voice-read-all")
        with page.expect_response(lambda r: "/v1/audio/speech" in r.url, timeout=60_000) as read_out:
            assert record(page, 3.3).status == 200  # sent at once, and the reply read when complete
            page.wait_for_selector("#chatbot [data-testid='user']:has-text('window for dinner')")
        assert read_out.value.status == 200 and read_out.value.headers["content-type"] == "audio/mpeg"

        speaker = page.locator("#chatbot .voice-read").last
        assert speaker.get_attribute("aria-label") == "Read aloud"
        with page.expect_response(lambda r: "/v1/audio/speech" in r.url) as clicked:
            speaker.click()
        assert clicked.value.status == 200
        page.wait_for_selector("#chatbot .voice-read[aria-pressed='true']")  # playing
        speaker.click()  # a second press stops it
        page.wait_for_selector("#chatbot .voice-read[aria-pressed='false']")
        assert page.inner_text(STATUS) == ""  # no error on the way

        # Stop pressed at the moment the sound is handed to the player, before it starts: the
        # browser rejects play() as interrupted, which is the user's wish, not a failure.
        page.evaluate(STOP_AT_PLAY)
        with page.expect_response(lambda r: "/v1/audio/speech" in r.url) as clicked:
            speaker.click()
        assert clicked.value.status == 200
        page.wait_for_function("window.__playInterrupted !== undefined")
        assert page.evaluate("window.__playInterrupted") == "AbortError"
        page.wait_for_selector("#chatbot .voice-read[aria-pressed='false']")
        page.wait_for_timeout(300)  # the rejection's handler runs after the promise settles
        assert page.inner_text(STATUS) == ""
    finally:
        context.close()
