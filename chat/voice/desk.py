"""The voice of the app: one speech-to-text and one text-to-speech provider, with the checks
every entry point shares (the HTTP routes and the page call the same two methods).

Limits and silence are judged before a provider runs; a Chinese transcript is folded to the
user's script after; the reply is stripped of Markdown before it is read.
"""

from __future__ import annotations

from dataclasses import replace

from chat.i18n import detect_language
from chat.voice.audio import decode
from chat.voice.base import Speaker, Speech, Transcriber, Transcript
from chat.voice.chinese import in_users_script, whisper_language
from chat.voice.errors import BadVoiceRequest, NoSpeech, VoiceOff
from chat.voice.recordings import Recordings
from chat.voice.speakable import speakable

MAX_INPUT_CHARS = 4096  # as OpenAI's /v1/audio/speech
DEFAULT_MAX_SECONDS = 300.0


class Voice:
    """``transcriber`` / ``speaker`` None: that direction is off (the page may still speak with
    the browser's own synthesis when ``browser_speech``)."""

    def __init__(
        self,
        transcriber: Transcriber | None,
        speaker: Speaker | None,
        *,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        recordings: Recordings | None = None,
        browser_speech: bool = False,
    ) -> None:
        self.transcriber = transcriber
        self.speaker = speaker
        self.max_seconds = max_seconds
        self.recordings = recordings
        self.browser_speech = browser_speech

    @property
    def page_speech(self) -> str:
        """Who reads replies on the page: ``server``, ``browser`` (its own synthesis) or ``off``."""
        if self.speaker is not None:
            return "server"
        return "browser" if self.browser_speech else "off"

    def hear(self, data: bytes, filename: str = "", language: str | None = None) -> Transcript:
        """The words in an upload. ``language``: the user's (``zh``, ``zh-TW``, ``en``), or None
        to let the model tell. Raises ``VoiceError`` for audio a person must fix."""
        if self.transcriber is None:
            raise VoiceOff("voice.stt_off")
        code = whisper_language(language)
        clip = decode(data, filename, self.max_seconds)
        heard = self.transcriber.transcribe(clip, code)
        segments = tuple(
            replace(s, text=in_users_script(s.text, language, heard.language)) for s in heard.segments
        )
        text = in_users_script(heard.text, language, heard.language).strip()
        if not text:
            raise NoSpeech()
        transcript = replace(heard, text=text, segments=segments)
        if self.recordings is not None:
            self.recordings.keep(clip, transcript)
        return transcript

    def say(self, text: str, *, voice: str = "", response_format: str = "wav") -> Speech:
        """``text`` (a reply, Markdown allowed) read aloud in its own language."""
        if self.speaker is None:
            raise VoiceOff("voice.tts_off")
        if response_format not in self.speaker.formats:
            raise BadVoiceRequest(
                "voice.bad_choice", field="response_format", choices=", ".join(self.speaker.formats)
            )
        spoken = speakable(text) if isinstance(text, str) and len(text) <= MAX_INPUT_CHARS else ""
        if not spoken:
            raise BadVoiceRequest("voice.no_input", limit=MAX_INPUT_CHARS)
        return self.speaker.speak(
            spoken, language=detect_language(spoken), voice=voice, response_format=response_format
        )
