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
from chat.backends.structured import format_type, parse_response_format
from chat.errors import InvalidRequest
from chat.messages import GenerationParams, Message
from chat.service.errors import ApiError

PARAM_KEYS = ("temperature", "top_p", "max_new_tokens", "context_length", "seed")
MAX_DEPTH = 100  # nesting levels a body may have: far more than any real request, far below recursion limits
JSON_SPACE = " \t\r\n"
_START_KINDS = {"[": "array", '"': "string", "t": "boolean", "f": "boolean", "n": "null"}
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = [1 if b in b"[{" else -1 for b in range(256)]


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body is larger than the limit of {limit} bytes")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes (declared or streamed), else 400."""
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
        raise ApiError(400, "invalid_json", "the request body is empty: send a JSON object")
    kind = _START_KINDS.get(body[0], "number" if body[0] in "-0123456789" else "")
    if kind:
        raise ApiError(400, "invalid_json", f"the request body must be a JSON object, got {kind}")
    too_deep = ApiError(
        400, "invalid_json", f"the request body is nested too deeply: at most {MAX_DEPTH} levels"
    )
    if body[0] == "{" and _depth(body) > MAX_DEPTH:
        raise too_deep
    try:  # an object, or not JSON at all (which fails at its first character)
        data = json.loads(text)
    except RecursionError:  # only on a stack already nearly spent: the same answer as above
        raise too_deep from None
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON{where}") from None
    if not isinstance(data, dict):  # pragma: no cover - the first character said so already
        raise ApiError(400, "invalid_json", f"the request body must be a JSON object, got {_kind(data)}")
    return data


def _decoded(raw: bytes | str) -> str:
    """Bytes as text in the encoding JSON allows (UTF-8, -16 or -32, found as ``json.loads`` does)."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode(json.detect_encoding(raw), "strict")
    except (UnicodeDecodeError, LookupError):
        raise ApiError(400, "invalid_json", "the request body is not valid JSON (not UTF-8 text)") from None


def _depth(text: str) -> int:
    """How deeply the arrays and objects of ``text`` nest (brackets inside strings do not count)."""
    brackets = _STRING.sub("", text).encode().translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def reject_unknown(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise invalid(f"unknown field(s) in {where}: {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def text_field(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise invalid(f"{where}{key} is required")
        return ""
    if not isinstance(value, str):
        raise invalid(f"{where}{key} must be a string, got {_kind(value)}")
    return value


def bool_field(data: Mapping[str, Any], key: str, where: str = "") -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{where}{key} must be true or false, got {_kind(value)}")
    return value


def object_field(data: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{where}{key} must be an object, got {_kind(value)}")
    return value


def messages_field(value: Any, where: str) -> list[Message]:
    """A list of ``{role, content}`` objects (content a string or OpenAI text parts)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"{where} must be a list of {{role, content}} objects, got {_kind(value)}")
    try:
        return [Message.from_dict(item) for item in value]
    except InvalidRequest as exc:
        raise invalid(f"{where}: {exc.detail}") from None


def params_from(values: Mapping[str, Any], defaults: GenerationParams) -> GenerationParams:
    """``defaults`` with the given sampling values; range and type errors become a 400."""
    given = {k: values[k] for k in PARAM_KEYS if k in values and values[k] is not None}
    merged = {k: getattr(defaults, k) for k in PARAM_KEYS} | given
    try:
        return GenerationParams(**merged)
    except InvalidRequest as exc:
        raise invalid(exc.detail) from None


def response_format_field(value: Any, chain: Sequence[Backend]) -> str | None:
    """``response_format`` as canonical JSON (None: free text); 400 when it is malformed or a
    backend that may answer (the chosen one or a fallback) cannot honour it."""
    try:
        response_format = parse_response_format(value)
    except InvalidRequest as exc:
        raise invalid(exc.detail) from None
    kind = format_type(response_format)
    for backend in chain:
        if kind not in backend.response_formats:
            raise invalid(
                f"response_format {kind} is not supported by the {backend.name} backend ({backend.model})"
            )
    return response_format


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )
