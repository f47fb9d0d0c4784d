"""Structured output: OpenAI's ``response_format``, checked once, and a llama.cpp grammar for it.

The accepted shapes are OpenAI's: ``{"type": "text"}``, ``{"type": "json_object"}`` and
``{"type": "json_schema", "json_schema": {"name", "schema", "strict"?, "description"?}}``.
``parse_response_format`` turns one into canonical JSON text (hashable, so it can sit in
``GenerationParams`` and the response cache key); a cloud backend sends it on as it is, and the
local backend constrains sampling with ``llama_grammar``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

from chat.errors import InvalidRequest

if TYPE_CHECKING:
    from llama_cpp import LlamaGrammar

FORMAT_TYPES = ("text", "json_object", "json_schema")
STRUCTURED_FORMATS = frozenset(FORMAT_TYPES)  # what a backend that can constrain its output honours
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for json_schema.name
# Errors llama-cpp-python's schema converter raises on a schema it cannot express.
_CONVERTER_ERRORS = (AssertionError, AttributeError, KeyError, TypeError, ValueError, RecursionError)


def parse_response_format(value: Any) -> str | None:
    """``response_format`` as canonical JSON text; None for free text. Raises ``InvalidRequest``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(reason="format.not_object", kind=type(value).__name__)
    kind = value.get("type")
    if kind not in FORMAT_TYPES:
        raise InvalidRequest(reason="format.type", allowed=", ".join(FORMAT_TYPES), value=repr(kind)[:80])
    if kind == "text":
        return None
    if kind == "json_object":
        return _canonical({"type": "json_object"})
    return _canonical({"type": "json_schema", "json_schema": _json_schema(value.get("json_schema"))})


def format_type(response_format: str | None) -> str:
    """The ``type`` of a canonical ``response_format`` ("text" for None)."""
    return "text" if response_format is None else json.loads(response_format)["type"]


def llama_grammar(response_format: str | None) -> LlamaGrammar | None:
    """The grammar that makes llama.cpp sample only what ``response_format`` allows (None: free).

    ``json_object``: any JSON object; ``json_schema``: JSON that the schema accepts. A schema the
    converter cannot express raises ``InvalidRequest`` (a 400), never a crash mid-generation.
    """
    if response_format is None:
        return None
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(_grammar_text(response_format), verbose=False)


@functools.lru_cache(maxsize=64)
def _grammar_text(response_format: str) -> str:
    """GBNF for a canonical format (cached: a client usually sends the same schema again)."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    fmt = json.loads(response_format)
    if fmt["type"] == "json_object":
        return JSON_GBNF
    if fmt["type"] != "json_schema":
        raise InvalidRequest(
            reason="format.type", allowed="json_object, json_schema", value=repr(fmt["type"])
        )
    try:
        return json_schema_to_gbnf(json.dumps(fmt["json_schema"]["schema"]))
    except _CONVERTER_ERRORS as exc:
        what = type(exc).__name__ if isinstance(exc, RecursionError) else str(exc)[:200]
        raise InvalidRequest(reason="format.grammar", error=what) from None


def _json_schema(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise InvalidRequest(reason="format.json_schema")
    unknown = sorted(set(spec) - {"name", "schema", "strict", "description"})
    if unknown:
        raise InvalidRequest(reason="format.unknown", fields=", ".join(unknown)[:200])
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(reason="format.name", value=repr(name)[:80])
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest(reason="format.schema", kind=type(schema).__name__)
    strict = spec.get("strict", False)
    if strict is not None and not isinstance(strict, bool):
        raise InvalidRequest(reason="format.strict", kind=type(strict).__name__)
    out: dict[str, Any] = {"name": name, "schema": schema, "strict": bool(strict)}
    description = spec.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise InvalidRequest(reason="format.description", kind=type(description).__name__)
        out["description"] = description
    return out


def _canonical(value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    except (RecursionError, ValueError):
        raise InvalidRequest(reason="format.too_deep") from None
