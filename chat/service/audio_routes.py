"""OpenAI's audio routes on this server, over the app's ``Voice`` (``chat.voice``).

    POST /v1/audio/transcriptions   multipart: ``file`` (any audio FFmpeg reads), ``model``
                                    (ignored: the server's model), ``language`` (en, zh, zh-TW...),
                                    ``response_format`` json | text | verbose_json
    POST /v1/audio/speech           JSON: ``input`` (at most 4096 characters), ``voice``,
                                    ``response_format`` mp3 (default) | wav | opus | flac | aac | pcm

They stand behind the door like every ``/v1`` route (token or login, and one unit of
``CHAT_RATE_LIMIT`` per request). The upload is read into memory (never spooled to disk) up to
25 MB; bad audio, silence or a recording over ``--max-audio-seconds`` is a 4xx in the one JSON
error shape, in the user's language (``language`` when given, else Accept-Language).
Transcription and synthesis run in a worker thread, off the event loop. Each request is counted
in ``/metrics`` (``Metrics.count_voice``): by route and outcome, its time, and the seconds of audio
heard or characters read aloud.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from chat.errors import ChatError
from chat.i18n import Lang
from chat.service.bodies import read_json, refusal
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import asked_language
from chat.service.shared import Service
from chat.service.tracking import RequestRecord
from chat.voice import Voice, VoiceError
from chat.voice.audio import MAX_BYTES
from chat.voice.base import Transcript
from chat.voice.errors import AudioTooLarge

MULTIPART_SLACK = 64 * 1024  # multipart framing and the small fields around the file
BODY_LIMIT = MAX_BYTES + MULTIPART_SLACK
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")
SPEECH_BODY_LIMIT = 64 * 1024  # 4096 characters of input, as UTF-8, with room for the rest
UPLOAD_SCHEMA = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary"},
                "language": {"type": "string"},
                "response_format": {"type": "string", "enum": list(TRANSCRIPT_FORMATS)},
            },
        }
    }
}


class _InMemory(MultiPartParser):
    """Starlette's parser with the file kept in memory: a recording never touches the disk."""

    spool_max_size = BODY_LIMIT


class _TooLarge(Exception):
    pass


def register(app: FastAPI, service: Service, voice: Voice) -> None:
    @app.post(
        "/v1/audio/transcriptions",
        tags=["openai"],
        summary="OpenAI-compatible speech to text",
        openapi_extra={"requestBody": {"required": True, "content": UPLOAD_SCHEMA}},
    )
    async def transcriptions(request: Request) -> Response:
        record = service.record("openai", request)
        lang = asked_language(request)
        try:
            form = await _form(request)
            language = _text(form, "language")
            lang = "zh" if language.lower().startswith("zh") else lang
            answer = _text(form, "response_format") or "json"
            if answer not in TRANSCRIPT_FORMATS:
                raise _choice("response_format", TRANSCRIPT_FORMATS)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise refusal(400, "invalid_request", "voice.no_file")
            data = await upload.read()
            transcript = await _in_thread(voice.hear, data, upload.filename or "", language or None)
        except ApiError as exc:
            return _refused(service, record, exc, lang, "transcriptions")
        except Exception:
            _count(service, record, "transcriptions", 500)
            raise
        _done(service, record, "transcriptions", audio_seconds=transcript.seconds)
        return _transcript_response(transcript, answer, record.id)

    @app.post("/v1/audio/speech", tags=["openai"], summary="OpenAI-compatible text to speech")
    async def speech(request: Request) -> Response:
        record = service.record("openai", request)
        lang = asked_language(request)
        try:
            body = await read_json(request, SPEECH_BODY_LIMIT)
            text = body.get("input")
            lang = asked_language(request, text)
            voice_name = body.get("voice") or ""
            answer = body.get("response_format") or "mp3"
            if not isinstance(voice_name, str) or not isinstance(answer, str):
                raise refusal(400, "invalid_request", "voice.bad_voice", value=type(voice_name).__name__)
            said = await _in_thread(
                voice.say, text if isinstance(text, str) else "", voice=voice_name, response_format=answer
            )
        except ApiError as exc:
            return _refused(service, record, exc, lang, "speech")
        except Exception:
            _count(service, record, "speech", 500)
            raise
        _done(service, record, "speech", characters=len(text))
        return Response(said.audio, media_type=said.media_type, headers={"X-Request-ID": record.id})


async def _form(request: Request) -> FormData:
    """The multipart body, at most ``BODY_LIMIT`` bytes (413 past it, declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > BODY_LIMIT:
        raise _as_api(AudioTooLarge(MAX_BYTES))
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise refusal(400, "invalid_request", "voice.no_file")

    async def chunks() -> AsyncIterator[bytes]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > BODY_LIMIT:
                raise _TooLarge
            yield chunk

    try:
        return await _InMemory(request.headers, chunks(), max_files=1, max_fields=8).parse()
    except _TooLarge:
        raise _as_api(AudioTooLarge(MAX_BYTES)) from None
    except (MultiPartException, HTTPException):  # a malformed body, or more parts than allowed
        raise refusal(400, "invalid_request", "voice.no_file") from None


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _choice(field: str, choices: tuple[str, ...]) -> ApiError:
    return refusal(400, "invalid_request", "voice.bad_choice", field=field, choices=", ".join(choices))


async def _in_thread(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``call`` off the event loop; a voice or provider failure becomes an ``ApiError``."""
    try:
        return await anyio.to_thread.run_sync(lambda: call(*args, **kwargs))
    except ChatError as exc:
        raise _as_api(exc) from None


def _as_api(exc: ChatError) -> ApiError:
    if isinstance(exc, VoiceError):
        return ApiError(exc.status, exc.kind, text=exc.user_message)
    return from_chat_error(exc)


def _refused(service: Service, record: RequestRecord, exc: ApiError, lang: Lang, route: str) -> Response:
    service.tracker.reject(record, exc.kind, exc.status)
    _count(service, record, route, exc.status)
    return exc.response(record.id, lang)


def _done(
    service: Service, record: RequestRecord, route: str, *, audio_seconds: float = 0.0, characters: int = 0
) -> None:
    """A log line and the voice metrics for the request; the chat metrics count replies, not speech."""
    record.finished, record.status, record.outcome = True, 200, "ok"
    service.log.write(record.log_fields())
    _count(service, record, route, 200, audio_seconds=audio_seconds, characters=characters)


def _count(
    service: Service,
    record: RequestRecord,
    route: str,
    status: int,
    *,
    audio_seconds: float = 0.0,
    characters: int = 0,
) -> None:
    seconds = time.perf_counter() - record.started
    service.metrics.count_voice(route, status, seconds, audio_seconds=audio_seconds, characters=characters)


def _transcript_response(transcript: Transcript, answer: str, request_id: str) -> Response:
    headers = {"X-Request-ID": request_id}
    if answer == "text":
        return PlainTextResponse(transcript.text, headers=headers)
    body: dict[str, Any] = {"text": transcript.text}
    if answer == "verbose_json":
        body = {
            "task": "transcribe",
            "language": transcript.language,
            "duration": round(transcript.seconds, 2),
            "text": transcript.text,
            "segments": [
                {"id": i, "start": s.start, "end": s.end, "text": s.text}
                for i, s in enumerate(transcript.segments)
            ],
        }
    return JSONResponse(body, headers=headers)
