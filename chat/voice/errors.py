"""Voice failures a caller can act on, each with its HTTP status and a bilingual sentence.

They are ``ChatError`` subclasses so every entry point renders them the same way; the sentence
is the whole message (no "Invalid request:" in front): a person reads it under the microphone.
A remote speech service's failures are the chat backends' own classes (``Unavailable``, ...).
"""

from __future__ import annotations

from chat.errors import ChatError
from chat.i18n import Lang


class VoiceError(ChatError):
    """``status`` and ``kind`` are what the HTTP routes answer with."""

    status = 400
    kind = "invalid_request"

    def __init__(self, reason: str, **fields: object) -> None:
        super().__init__(reason=reason, **fields)

    def user_message(self, lang: Lang = "en") -> str:
        return self.detail_in(lang)


class NotAudio(VoiceError):
    status, kind = 415, "not_audio"

    def __init__(self) -> None:
        super().__init__("voice.not_audio")


class NoSpeech(VoiceError):
    status, kind = 422, "no_speech"

    def __init__(self) -> None:
        super().__init__("voice.silence")


class AudioTooLong(VoiceError):
    status, kind = 422, "audio_too_long"

    def __init__(self, limit: float) -> None:
        super().__init__("voice.too_long", limit=f"{limit:g}")


class AudioTooLarge(VoiceError):
    status, kind = 413, "payload_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__("voice.too_large", limit=f"{limit_bytes / 1024 / 1024:g}")


class VoiceOff(VoiceError):
    """The operator turned this direction off (``--stt off`` / ``--tts off`` or ``browser``)."""

    status, kind = 404, "voice_off"


class BadVoiceRequest(VoiceError):
    """A field of a voice request is wrong (``reason`` is a ``voice.*`` sentence)."""


class ModelMissing(VoiceError):
    """The speech model cannot be loaded: the operator's problem, told in the log; the user gets
    a sentence without paths."""

    status, kind = 503, "voice_model_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__("voice.model_missing")
        self.log_detail = detail

    def __str__(self) -> str:
        return self.log_detail
