"""The operator's tools as a reply sees them: named, narrowed per persona, called safely.

Every MCP tool is offered to the model as ``server__tool`` (OpenAI's name characters) and shown to
people as ``server.tool``. A persona's ``tools:`` line narrows what it may use (``orders.*``,
``orders.get_order_status``, or ``none``); a persona without one, or a system prompt of the
user's own, may use every tool. A call is checked before it runs (a tool that is not offered,
arguments that are not JSON or break the tool's schema) and every way it can end is a result the
model reads: a timeout, an error, a server that is down. Results are data: credentials masked,
cut to ``RESULT_CHARS``, and checked by the output guard before anyone sees them.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chat.backends.tool_offer import EMPTY_SCHEMA, ToolOffer
from chat.errors import OutputBlocked
from chat.guards.mask import mask_secrets
from chat.i18n import Lang, t
from chat.messages import Message, ToolCall, ToolUse
from chat.tools.config import load_config
from chat.tools.confirm import HeldCalls
from chat.tools.mcp_client import McpHub, RemoteTool, ToolFailure

if TYPE_CHECKING:
    from chat.settings import Settings


class Persona(Protocol):
    """What the registry reads of a persona (``chat.reply.personas.Persona``)."""

    prompt: str
    tools: tuple[str, ...] | None


RESULT_CHARS = 8_000  # a result's characters the model and the page get; the rest is cut, and said
ARGUMENT_CHARS = 16_000  # arguments longer than this are refused before any call
_WIRE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ServerTool:
    """One MCP tool: ``wire`` is the name the model calls, ``name`` the one people read."""

    wire: str
    name: str
    remote: RemoteTool
    acting: bool
    timeout: float

    def function(self) -> dict[str, Any]:
        return {
            "name": self.wire,
            "description": self.remote.description[:1024],
            "parameters": self.remote.schema or EMPTY_SCHEMA,
        }


def wire_name(server: str, tool: str) -> str:
    return _WIRE.sub("_", f"{server}__{tool}")[:64]


class ToolRegistry:
    """The tools the hub lists now; ``for_messages`` picks the set a conversation may use."""

    def __init__(
        self, hub: McpHub | None, *, timeout: float, personas: Sequence[Persona] = (), max_rounds: int = 4
    ) -> None:
        self.hub = hub
        self.timeout = timeout
        self.max_rounds = max_rounds
        self._patterns = {p.prompt: p.tools for p in personas if p.prompt}
        self.held = HeldCalls()  # acting calls waiting for the user's yes (chat.tools.confirm)

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close()

    def available(self) -> dict[str, ServerTool]:
        if self.hub is None:
            return {}
        tools: dict[str, ServerTool] = {}
        for remote in self.hub.tools():
            config = self.hub.links[remote.server].config
            tool = ServerTool(
                wire=wire_name(remote.server, remote.name),
                name=f"{remote.server}.{remote.name}",
                remote=remote,
                acting=any(fnmatch.fnmatchcase(remote.name, p) for p in config.acting),
                timeout=config.timeout or self.timeout,
            )
            tools.setdefault(tool.wire, tool)
        return tools

    def for_messages(self, messages: Sequence[Message]) -> ToolSet | None:
        """The tools a conversation may use (None: none): its persona's, found by its system prompt."""
        system = messages[0].content if messages and messages[0].role == "system" else ""
        patterns = self._patterns.get(system)
        tools = self.available()
        if patterns is not None:
            tools = {k: v for k, v in tools.items() if _allowed(v.name, patterns)}
        return ToolSet(tools, self) if tools else None


def open_tools(settings: Settings, personas: Sequence[Persona] = ()) -> ToolRegistry:
    """The registry over ``--mcp-config``'s servers, connected (a server that is down is logged)."""
    hub = McpHub(load_config(settings.mcp_config)).start()
    return ToolRegistry(
        hub, timeout=settings.tool_timeout, personas=personas, max_rounds=settings.max_tool_rounds
    )


def _allowed(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns if p != "none")


class ToolSet:
    """The tools one reply may call, and how each call is run and reported."""

    def __init__(self, tools: dict[str, ServerTool], registry: ToolRegistry) -> None:
        self.tools = tools
        self.registry = registry

    def offer(self, choice: str = "auto") -> ToolOffer:
        return ToolOffer(tuple(tool.function() for tool in self.tools.values()), choice)

    def display_name(self, call: ToolCall) -> str:
        tool = self.tools.get(call.name)
        return tool.name if tool is not None else call.name

    def run(
        self,
        call: ToolCall,
        *,
        lang: Lang,
        guard: Any = None,  # the engine's output guard (chat.engine.protocols.OutputGuard)
        cancel: threading.Event | None = None,
        confirmed: bool = False,
    ) -> tuple[ToolUse, str]:
        """Run ``call``; the ``ToolUse`` people see, and the result text the model reads."""
        started = time.perf_counter()
        tool = self.tools.get(call.name)
        status, text = self._outcome(call, tool, cancel, confirmed)
        text = _fitted(mask_secrets(text))
        shown, model_text = text, text
        if guard is not None:
            try:
                out = guard.new_filter()
                shown = out.feed(text) + out.flush()
            except OutputBlocked:
                status, shown = "blocked", t("tools.blocked", lang)
                model_text = t("tools.blocked", "en")
        use = ToolUse(
            id=call.id,
            name=tool.name if tool is not None else call.name,
            arguments=mask_secrets(call.arguments),
            result=shown,
            status=status,
            duration=round(time.perf_counter() - started, 3),
        )
        return use, model_text

    def _outcome(
        self, call: ToolCall, tool: ServerTool | None, cancel: threading.Event | None, confirmed: bool
    ) -> tuple[str, str]:
        """(status, result text) of one call: checked, then run."""
        if tool is None:
            offered = ", ".join(self.tools) or "none"
            return "unknown", f"Error: there is no tool named {call.name!r}. Tools offered: {offered}."
        arguments, problem = _arguments(call.arguments, tool.remote.schema)
        if problem:
            return "invalid", f"Error: the arguments do not fit {tool.wire}'s schema: {problem}"
        if tool.acting and not confirmed:
            return "declined", (
                "This tool acts, so it waits for the user's confirmation and was not run. Tell the "
                "user what it would do; they confirm by replying yes."
            )
        hub = self.registry.hub
        assert hub is not None
        try:
            outcome = hub.call(
                tool.remote.server, tool.remote.name, arguments, timeout=tool.timeout, cancel=cancel
            )
        except ToolFailure as failure:
            reasons = {
                "timeout": f"Error: the tool did not answer within {tool.timeout:g} seconds.",
                "cancelled": "The call was stopped by the user.",
            }
            return failure.kind, reasons.get(
                failure.kind, "Error: the tool's server is unavailable right now."
            )
        return ("error" if outcome.is_error else "ok"), outcome.text


def _arguments(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The call's arguments as an object, and what is wrong with them ("" when nothing)."""
    if len(text) > ARGUMENT_CHARS:
        return {}, f"they are {len(text)} characters long, at most {ARGUMENT_CHARS} are accepted"
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        return {}, f"they are not valid JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(value, dict):
        return {}, "they must be a JSON object"
    if schema:
        import jsonschema

        try:
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema).iter_errors(value)
            )
        except jsonschema.exceptions.SchemaError:
            error = None  # the server's schema is its own business: the server checks the call
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            return {}, f"{where + ': ' if where else ''}{error.message[:300]}"
    return value, ""


def _fitted(text: str) -> str:
    if len(text) <= RESULT_CHARS:
        return text
    return text[:RESULT_CHARS] + "\n" + t("tools.cut", "en", total=len(text), kept=RESULT_CHARS)
