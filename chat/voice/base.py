"""The small interface every speech provider implements, and what they return.

    Transcriber.transcribe(clip, language) -> Transcript     speech to text
    Speaker.speak(text, language, voice, response_format) -> Speech   text to speech

Providers do the model or API work only: limits, silence, the user's script and keeping
recordings are done once around them (``chat.voice.desk``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from chat.voice.audio import Clip


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """``language``: the one spoken (the caller's, or the model's guess when none was given)."""

    text: str
    language: str
    seconds: float
    segments: tuple[Segment, ...] = field(default=())


@dataclass(frozen=True)
class Speech:
    audio: bytes
    media_type: str
    response_format: str


class Transcriber(Protocol):
    name: str

    def transcribe(self, clip: Clip, language: str | None) -> Transcript:
        """``language``: an ISO 639-1 code, or None to let the model tell."""
        ...


class Speaker(Protocol):
    name: str
    formats: tuple[str, ...]

    def speak(self, text: str, *, language: str, voice: str, response_format: str) -> Speech:
        """``language``: en or zh (the text's); ``voice``: the provider's name, or "" for its
        default in that language."""
        ...
