"""Reading request bodies: a size cap, JSON that must be an object, and typed fields.

The routes parse by hand instead of through pydantic so that every mistake gets one short,
specific sentence ("context.temperature must be a number, got str") in the service's error shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from starlette.requests import Request

from chat.backends.base import Backend
from chat.backends.local.grammars import format_type, parse_response_format
from chat.errors import InvalidRequest
from chat.i18n import t
from chat.messages import GenerationParams, Message
from chat.service.errors import ApiError, from_invalid

PARAM_KEYS = ("temperature", "top_p", "max_new_tokens", "context_length", "seed")
MAX_DEPTH = 100  # nesting levels a body may have: far more than any real request, far below recursion limits
JSON_SPACE = " \t\r\n"
_START_KINDS = {"[": "array", '"': "string", "t": "boolean", "f": "boolean", "n": "null"}
# A JSON string once its escaped backslashes and quotes are gone: no backtracking on any input
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = [1 if b in b"[{" else -1 for b in range(256)]


def too_large(limit: int) -> ApiError:
    return refusal(413, "payload_too_large", "api.too_large", limit=limit)


def refusal(status: int, error_type: str, key: str, **fields: object) -> ApiError:
    """An ``ApiError`` saying ``key`` (a sentence in ``chat.i18n``) in the language the route
    renders it in; ``fields`` may be any name, ``kind`` included."""
    return ApiError(status, error_type, text=lambda lang: t(key, lang, **fields))


def invalid_field(key: str, **fields: object) -> ApiError:
    """400 ``invalid_request`` saying ``key``: ``invalid_field("api.required", field="user_input")``."""
    return refusal(400, "invalid_request", key, **fields)


def _bad_json(key: str, **fields: object) -> ApiError:
    return refusal(400, "invalid_json", key, **fields)


def is_json(content_type: str) -> bool:
    """``application/json`` or ``application/<something>+json``, whatever the parameters."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 415 unless it is sent as JSON (a page of another site can send
    text/plain without asking first), 413 past ``limit`` bytes (declared or streamed), else 400."""
    if not is_json(request.headers.get("content-type", "")):
        raise refusal(415, "unsupported_media_type", "api.json_only")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return parse_json(b"".join(chunks))


def parse_json(raw: bytes | str) -> dict[str, Any]:
    """The body as a JSON object, decided the same way whatever the interpreter's recursion limit.

    A body that is not an object is named by its first character, without parsing it, and an
    object nested deeper than ``MAX_DEPTH`` is refused before ``json.loads`` could recurse.
    """
    text = _decoded(raw)
    body = text.lstrip(JSON_SPACE)
    if not body:
        raise _bad_json("api.empty_body")
    kind = _START_KINDS.get(body[0], "number" if body[0] in "-0123456789" else "")
    if kind:
        raise _bad_json("api.not_object", kind=kind)
    too_deep = _bad_json("api.too_deep", limit=MAX_DEPTH)
    if body[0] == "{" and too_deeply_nested(body.encode()):
        raise too_deep
    try:  # an object, or not JSON at all (which fails at its first character)
        data = json.loads(text)
    except RecursionError:  # only on a stack already nearly spent: the same answer as above
        raise too_deep from None
    except json.JSONDecodeError as exc:
        raise _bad_json("api.not_json_at", line=exc.lineno, column=exc.colno) from None
    except ValueError:
        raise _bad_json("api.not_json") from None
    if not isinstance(data, dict):  # pragma: no cover - the first character said so already
        raise _bad_json("api.not_object", kind=_kind(data))
    return data


def _decoded(raw: bytes | str) -> str:
    """Bytes as text in the encoding JSON allows (UTF-8, -16 or -32, found as ``json.loads`` does)."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode(json.detect_encoding(raw), "strict")
    except (UnicodeDecodeError, LookupError):
        raise _bad_json("api.not_utf8") from None


def too_deeply_nested(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the arrays and objects of a JSON body nest deeper than ``limit``, found without
    recursing or backtracking: escaped backslashes and quotes go first (left to right, as a
    parser pairs them), then every string with any brackets in it, then all but the brackets."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = _STRING.sub(b"", unescaped).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False  # too few to nest that deep
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets))) > limit


def invalid(message: str) -> ApiError:
    """A 400 with a sentence as written; prefer ``invalid_field(key, ...)``, which is translated."""
    return ApiError(400, "invalid_request", message)


def reject_unknown(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """400 naming unknown keys; ``where`` is a field name ("context") or an ``api.where_*`` key."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            text=lambda lang: t(
                "api.unknown_fields",
                lang,
                where=t(where, lang) if where.startswith("api.") else where,
                unknown=", ".join(unknown),
                allowed=", ".join(allowed),
            ),
        )


def text_field(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise invalid_field("api.required", field=f"{where}{key}")
        return ""
    if not isinstance(value, str):
        raise invalid_field("api.not_string", field=f"{where}{key}", kind=_kind(value))
    return value


def bool_field(data: Mapping[str, Any], key: str, where: str = "") -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid_field("api.not_bool", field=f"{where}{key}", kind=_kind(value))
    return value


def object_field(data: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_field("api.not_object_field", field=f"{where}{key}", kind=_kind(value))
    return value


def messages_field(value: Any, where: str) -> list[Message]:
    """A list of ``{role, content}`` objects (content a string or OpenAI text parts)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_field("api.not_messages", field=where, kind=_kind(value))
    try:
        return [Message.from_dict(item) for item in value]
    except InvalidRequest as exc:
        raise from_invalid(exc, where) from None


def params_from(values: Mapping[str, Any], defaults: GenerationParams) -> GenerationParams:
    """``defaults`` with the given sampling values; range and type errors become a 400."""
    given = {k: values[k] for k in PARAM_KEYS if k in values and values[k] is not None}
    merged = {k: getattr(defaults, k) for k in PARAM_KEYS} | given
    try:
        return GenerationParams(**merged)
    except InvalidRequest as exc:
        raise from_invalid(exc) from None


def response_format_field(value: Any, chain: Sequence[Backend]) -> str | None:
    """``response_format`` as canonical JSON (None: free text); 400 when it is malformed or a
    backend that may answer (the chosen one or a fallback) cannot honour it."""
    try:
        response_format = parse_response_format(value)
    except InvalidRequest as exc:
        raise from_invalid(exc) from None
    kind = format_type(response_format)
    for backend in chain:
        if kind not in backend.response_formats:
            raise invalid_field("format.backend", kind=kind, backend=backend.name, model=backend.model)
    return response_format


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )
