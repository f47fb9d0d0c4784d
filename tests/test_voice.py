"""Voice providers for real: espeak-ng speaks, the embedded Whisper base (faster-whisper, int8)
transcribes, and every bad recording is refused with a sentence in the user's language before
any model runs. One short English clip and one short Mandarin clip, transcribed once each."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from chat.voice.audio import FORMATS, MAX_BYTES, decode, wav_bytes
from chat.voice.chinese import in_users_script, whisper_language
from chat.voice.desk import Voice
from chat.voice.errors import (
    AudioTooLarge,
    AudioTooLong,
    BadVoiceRequest,
    ModelMissing,
    NoSpeech,
    NotAudio,
    VoiceOff,
)
from chat.voice.espeak import Espeak
from chat.voice.recordings import Recordings
from chat.voice.speakable import speakable
from chat.voice.whisper import LocalWhisper

ENGLISH = "Please book a table by the window for dinner."
MANDARIN = "我想喝一杯咖啡。"


@pytest.fixture(scope="module")
def speaker() -> Espeak:
    return Espeak()


def silence(seconds: float, rate: int = 8000) -> bytes:
    return wav_bytes(bytes(int(seconds * rate) * 2), rate)


def test_english_round_trip_and_recording_kept_when_asked(speaker: Espeak, tmp_path: Path) -> None:
    voice = Voice(LocalWhisper(), speaker, recordings=Recordings(tmp_path))
    wav = voice.say(ENGLISH).audio
    heard = voice.hear(wav, "question.wav", "en")
    words = set(heard.text.lower().replace(".", " ").split())
    assert {"please", "book", "table", "window", "dinner"} <= words, heard.text
    assert heard.language == "en" and 2 < heard.seconds < 4
    kept = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert [p.suffix for p in kept] == [".json", ".wav"]
    assert kept[1].read_bytes() == wav
    assert json.loads(kept[0].read_text("utf-8"))["text"] == heard.text


def test_mandarin_comes_back_in_simplified_characters(speaker: Espeak) -> None:
    """espeak-ng's Mandarin is weak: asserted loosely (most characters), but the script strictly."""
    voice = Voice(LocalWhisper(), speaker)
    heard = voice.hear(voice.say(MANDARIN).audio, "zh.wav", "zh")
    assert heard.language == "zh"
    assert sum(c in heard.text for c in "我想喝一杯咖啡") >= 4, heard.text
    assert in_users_script(heard.text, "zh", "zh") == heard.text  # nothing traditional left


def test_the_users_script_wins_over_the_models() -> None:
    assert in_users_script("謝謝你的幫助", "zh", "zh") == "谢谢你的帮助"
    assert in_users_script("謝謝你的幫助", None, "zh") == "谢谢你的帮助"  # the default: simplified
    assert in_users_script("謝謝你的幫助", "zh-TW", "zh") == "謝謝你的幫助"
    assert in_users_script("謝謝你的幫助", "zh-Hant-HK", "zh") == "謝謝你的幫助"
    assert whisper_language("zh-CN") == "zh" and whisper_language("") is None
    with pytest.raises(BadVoiceRequest):
        whisper_language("english please")


@pytest.mark.parametrize(
    ("data", "error", "zh"),
    [
        (b"just some text, not a recording", NotAudio, "无法读取"),
        (silence(2.0), NoSpeech, "没有听到"),
        (silence(3.5), AudioTooLong, "超过 3 秒"),
        (bytes(MAX_BYTES + 1), AudioTooLarge, "超过 25 MB"),
        (b"", NotAudio, "无法读取"),
    ],
    ids=["not-audio", "silence", "too-long", "too-large", "empty"],
)
def test_bad_recordings_are_refused_before_any_model(data: bytes, error: type, zh: str) -> None:
    with pytest.raises(error) as caught:
        decode(data, "x.wav", max_seconds=3)
    assert zh in caught.value.user_message("zh")
    assert caught.value.user_message("en") and "Traceback" not in caught.value.user_message("en")


def test_a_long_recording_is_refused_while_it_decodes() -> None:
    """A minute of tone against a 5 s limit is refused (decoding stops at the limit)."""
    tone = (np.sin(np.arange(8000 * 60) * 0.3) * 3000).astype(np.int16).tobytes()
    with pytest.raises(AudioTooLong):
        decode(wav_bytes(tone, 8000), "long.wav", max_seconds=5)


@pytest.mark.parametrize("response_format", sorted(FORMATS))
def test_speech_in_every_format_decodes_back(speaker: Espeak, response_format: str) -> None:
    speech = Voice(None, speaker).say(
        "**Hello** there, [friend](https://example.com).", response_format=response_format
    )
    assert speech.media_type == FORMATS[response_format][3]
    if response_format == "pcm":
        with io.BytesIO() as buffer, wave.open(buffer, "wb") as out:
            out.setnchannels(1), out.setsampwidth(2), out.setframerate(22050), out.writeframes(speech.audio)
            data = buffer.getvalue()
    else:
        data = speech.audio
    assert 0.8 < decode(data, f"x.{response_format}", 300).seconds < 3


def test_every_speaker_shares_the_one_library(speaker: Espeak) -> None:
    """libespeak-ng's callback is process-wide: a second speaker (another app in the process)
    must not take the first one's audio."""
    other = Espeak()
    assert other.pcm("one", language="en")[0] and speaker.pcm("two", language="en")[0]


def test_speech_refuses_what_it_cannot_say(speaker: Espeak) -> None:
    with pytest.raises(BadVoiceRequest, match="response_format"):
        Voice(None, speaker).say("hi", response_format="ogg")
    with pytest.raises(BadVoiceRequest):
        Voice(None, speaker).say("```\nprint(1)\n```")  # nothing left to say
    with pytest.raises(BadVoiceRequest):
        Voice(None, speaker).say("hi", voice="no-such-voice")
    with pytest.raises(BadVoiceRequest, match="nothing in this text"):
        Voice(None, speaker).say("…", response_format="mp3")  # espeak-ng makes no sound of it
    with pytest.raises(VoiceOff):
        Voice(None, None).say("hi")
    with pytest.raises(VoiceOff):
        Voice(None, None).hear(b"", "x.wav")


def test_speakable_leaves_out_markdown_marks_code_and_addresses() -> None:
    reply = "# Title\n\n**Bold** and _it_ see [the docs](https://x.io/a) or https://y.io.\n\n```py\nx = 1\n```\n- 第一点"
    assert speakable(reply) == "Title\nBold and it see the docs or\n第一点"


def test_providers_follow_the_settings() -> None:
    from chat import Settings
    from chat.errors import ConfigError
    from chat.voice import build_voice
    from chat.voice.remote import RemoteSpeaker, RemoteTranscriber

    default = build_voice(Settings())
    assert isinstance(default.transcriber, LocalWhisper) and isinstance(default.speaker, Espeak)
    assert default.recordings is None and default.max_seconds == 300  # nothing kept unless asked
    quiet = build_voice(Settings(stt="off", tts="browser"))
    assert quiet.transcriber is None and quiet.speaker is None and quiet.page_speech == "browser"
    remote = build_voice(Settings(stt="http://127.0.0.1:9/v1", tts="https://speech.example/v1"))
    assert isinstance(remote.transcriber, RemoteTranscriber) and isinstance(remote.speaker, RemoteSpeaker)
    with pytest.raises(ConfigError, match="--stt must be local, off or an http"):
        Settings(stt="whisper")
    with pytest.raises(ConfigError, match="--max-audio-seconds"):
        Settings(max_audio_seconds=0)


def test_a_model_that_cannot_load_is_a_503_without_paths(speaker: Espeak) -> None:
    voice = Voice(LocalWhisper("/no/such/model"), speaker)
    with pytest.raises(ModelMissing) as caught:
        voice.hear(voice.say(ENGLISH).audio, "q.wav", "en")
    assert caught.value.status == 503
    assert "/no/such" not in caught.value.user_message("en") and "语音模型" in caught.value.user_message("zh")
