"""Voice: speech to text and text to speech behind one small interface (``chat.voice.base``).

    --stt local              faster-whisper on this machine (chat.voice.whisper), model from
                             --stt-model: empty for the embedded Whisper base, a folder, a Hub name
    --stt https://host/v1    any OpenAI-compatible /audio/transcriptions (chat.voice.remote)
    --tts espeak             espeak-ng's library on this machine (chat.voice.espeak)
    --tts https://host/v1    any OpenAI-compatible /audio/speech
    --tts browser            the page speaks with the browser's own synthesis; no server speech
    off                      either direction turned off

``build_voice(settings)`` makes the app's ``Voice`` (chat.voice.desk); nothing loads until the
first recording or reply is spoken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat.voice.desk import Voice
from chat.voice.errors import VoiceError
from chat.voice.recordings import Recordings

if TYPE_CHECKING:
    from chat.settings import Settings
    from chat.voice.base import Speaker, Transcriber

__all__ = ["Voice", "VoiceError", "build_voice"]


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def build_voice(settings: Settings) -> Voice:
    return Voice(
        _transcriber(settings),
        _speaker(settings),
        max_seconds=settings.max_audio_seconds,
        recordings=Recordings(settings.voice_recordings) if settings.voice_recordings else None,
        browser_speech=settings.tts == "browser",
    )


def _transcriber(settings: Settings) -> Transcriber | None:
    if settings.stt == "off":
        return None
    if _is_url(settings.stt):
        from chat.voice.remote import RemoteTranscriber

        return RemoteTranscriber(
            settings.stt, settings.stt_model, settings.stt_api_key, timeout=settings.total_timeout
        )
    from chat.voice.whisper import LocalWhisper

    return LocalWhisper(settings.stt_model)


def _speaker(settings: Settings) -> Speaker | None:
    if settings.tts in ("off", "browser"):
        return None
    if _is_url(settings.tts):
        from chat.voice.remote import RemoteSpeaker

        return RemoteSpeaker(
            settings.tts, settings.tts_model, settings.tts_api_key, timeout=settings.total_timeout
        )
    from chat.voice.espeak import Espeak

    return Espeak()
