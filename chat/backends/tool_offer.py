"""The tools a reply may call, in OpenAI's shapes, checked once and carried as canonical JSON.

``tools`` is ``[{"type": "function", "function": {"name", "description"?, "parameters"?}}]`` and
``tool_choice`` is ``"none"``, ``"auto"``, ``"required"`` or ``{"type": "function", "function":
{"name": ...}}``. ``parse_offer`` turns a request's three fields into one ``ToolOffer``;
``ToolOffer.canonical`` is the JSON text ``GenerationParams.tools`` carries (hashable, so params
stay a value), and ``ToolOffer.load`` reads it back (memoised: every round of a reply reads it).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from chat.errors import InvalidRequest

CHOICES = ("none", "auto", "required")
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for a function's name
MAX_TOOLS = 128  # OpenAI's own limit on tools per request
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolOffer:
    """The functions on offer (OpenAI ``function`` objects), how the model may use them
    (``choice``: none, auto, required, or one function's name) and whether it may ask for
    several calls at once."""

    functions: tuple[dict[str, Any], ...]
    choice: str = "auto"
    parallel: bool = True

    @property
    def named(self) -> str | None:
        """The function the model must call, when ``tool_choice`` named one."""
        return None if self.choice in CHOICES else self.choice

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.functions)

    def function(self, name: str) -> dict[str, Any] | None:
        return next((f for f in self.functions if f["name"] == name), None)

    def canonical(self) -> str:
        value = {"functions": list(self.functions), "choice": self.choice, "parallel": self.parallel}
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def with_choice(self, choice: str) -> ToolOffer:
        return ToolOffer(self.functions, choice, self.parallel)

    def openai_fields(self) -> dict[str, Any]:
        """``tools``, ``tool_choice`` and ``parallel_tool_calls`` for an OpenAI-compatible API."""
        tools = [{"type": "function", "function": f} for f in self.functions]
        choice: Any = self.choice
        if self.named:
            choice = {"type": "function", "function": {"name": self.named}}
        fields: dict[str, Any] = {"tools": tools, "tool_choice": choice}
        if not self.parallel:
            fields["parallel_tool_calls"] = False
        return fields

    @staticmethod
    def load(text: str | None) -> ToolOffer | None:
        return None if text is None else _load(text)


@functools.lru_cache(maxsize=64)
def _load(text: str) -> ToolOffer:
    value = json.loads(text)
    return ToolOffer(tuple(value["functions"]), value["choice"], value["parallel"])


def parse_offer(tools: Any, tool_choice: Any = None, parallel: Any = None) -> ToolOffer | None:
    """A request's ``tools``, ``tool_choice`` and ``parallel_tool_calls`` as one offer; None when
    no tools are offered. Raises ``InvalidRequest`` (a 400) for anything malformed."""
    if tools in (None, []):
        if tool_choice not in (None, "none", "auto"):
            raise InvalidRequest(reason="tools.choice_without_tools")
        return None
    if not isinstance(tools, list):
        raise InvalidRequest(reason="tools.not_list", kind=type(tools).__name__)
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(reason="tools.too_many", limit=MAX_TOOLS, count=len(tools))
    functions = tuple(_function(tool, index) for index, tool in enumerate(tools))
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        raise InvalidRequest(
            reason="tools.duplicate", names=", ".join(sorted({n for n in names if names.count(n) > 1}))
        )
    choice = _choice(tool_choice, names)
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest(reason="tools.parallel", kind=type(parallel).__name__)
    return ToolOffer(functions, choice, parallel is not False)


def _function(tool: Any, index: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise InvalidRequest(reason="tools.entry", index=index)
    spec = tool.get("function")
    if not isinstance(spec, dict):
        raise InvalidRequest(reason="tools.entry", index=index)
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidRequest(reason="tools.name", index=index, value=repr(name)[:80])
    parameters = spec.get("parameters", EMPTY_SCHEMA)
    if not isinstance(parameters, dict):
        raise InvalidRequest(reason="tools.parameters", name=name, kind=type(parameters).__name__)
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise InvalidRequest(reason="tools.description", name=name)
    out: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if spec.get("strict") is True:
        out["strict"] = True
    return out


def _choice(value: Any, names: list[str]) -> str:
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in CHOICES:
            raise InvalidRequest(reason="tools.choice", value=repr(value)[:80])
        return value
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or value.get("type", "function") != "function":
        raise InvalidRequest(reason="tools.choice", value=repr(value)[:80])
    if name not in names:
        raise InvalidRequest(
            reason="tools.choice_unknown", name=repr(name)[:80], names=", ".join(names)[:200]
        )
    return name
