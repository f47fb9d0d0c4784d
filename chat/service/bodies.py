"""Reading request bodies: a size cap, JSON that must be an object, and typed fields.

The routes parse by hand instead of through pydantic so that every mistake gets one short,
specific sentence ("context.temperature must be a number, got str") in the service's error shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from chat.errors import InvalidRequest
from chat.messages import GenerationParams, Message
from chat.service.errors import ApiError

PARAM_KEYS = ("temperature", "top_p", "max_new_tokens", "context_length", "seed")


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
    if not raw or not raw.strip():
        raise ApiError(400, "invalid_json", "the request body is empty: send a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", f"the request body must be a JSON object, got {_kind(data)}")
    return data


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


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )
