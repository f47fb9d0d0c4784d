"""Speech through any OpenAI-compatible service: ``/audio/transcriptions`` and ``/audio/speech``.

OpenAI itself, speaches, LocalAI, a Kokoro or Whisper server, or another copy of this app. The
upload goes as it was sent (no re-encoding); errors map to the chat backends' classes through
the cloud backend's one mapping, so no provider body or key reaches a user or a log.
"""

from __future__ import annotations

from typing import Any

import httpx

from chat.backends.openai_compat import shared_http_client
from chat.backends.openai_compat.errors import status_error, transport_error
from chat.errors import BadResponse
from chat.i18n import detect_language
from chat.voice.audio import FORMATS, Clip
from chat.voice.base import Speech, Transcript


class RemoteService:
    """One base URL (``https://api.openai.com/v1``), model name, key and time limit."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "", *, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._key = api_key
        self.timeout = timeout

    def post(self, path: str, **request: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        error = None
        try:
            response = shared_http_client().post(
                self.base_url + path, headers=headers, timeout=self.timeout, **request
            )
        except httpx.HTTPError as exc:
            # raised outside the except block: no __context__ carrying request headers
            error = transport_error(exc, backend=self.name, timed_out=False, connect_timeout=self.timeout)
        if error is not None:
            raise error
        if response.status_code != 200:
            raise status_error(response, response.content[:4096], backend=self.name, key=self._key)
        return response


class RemoteTranscriber(RemoteService):
    def transcribe(self, clip: Clip, language: str | None) -> Transcript:
        form = {"model": self.model or "whisper-1", "response_format": "json"}
        if language:
            form["language"] = language
        response = self.post("/audio/transcriptions", files={"file": (clip.filename, clip.data)}, data=form)
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError):
            text = None
        if not isinstance(text, str):
            raise BadResponse("not a transcription response", backend=self.name)
        text = text.strip()
        return Transcript(text=text, language=language or detect_language(text), seconds=clip.seconds)


class RemoteSpeaker(RemoteService):
    formats = tuple(FORMATS)

    def speak(self, text: str, *, language: str, voice: str = "", response_format: str = "wav") -> Speech:
        body = {
            "model": self.model or "tts-1",
            "input": text,
            "voice": voice or "alloy",
            "response_format": response_format,
        }
        response = self.post("/audio/speech", json=body)
        if not response.content:
            raise BadResponse("an empty speech response", backend=self.name)
        media_type = response.headers.get("content-type", "").split(";")[0] or FORMATS[response_format][3]
        return Speech(audio=response.content, media_type=media_type, response_format=response_format)
