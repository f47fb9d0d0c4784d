"""``--mcp-config FILE``: the operator's MCP servers, in the format other MCP clients read.

    {"mcpServers": {
        "orders": {"url": "http://host/mcp", "headers": {"Authorization": "Bearer ${ORDERS_TOKEN}"},
                   "acting": ["cancel_order"], "timeout": 20},
        "files":  {"command": "python", "args": ["files_server.py"], "env": {"ROOT": "/srv"}}}}

A server with ``url`` speaks streamable HTTP; one with ``command`` runs as a child process over
stdio. ``${NAME}`` in a URL, header, argument or environment value is read from the app's
environment, so a token need not sit in the file. ``acting`` names the tools that change
something (shell-style patterns): the page asks its user before one runs. ``timeout`` (seconds)
overrides ``--tool-timeout`` for that server's calls. A malformed file stops the start with a
clear ``ConfigError``; a server that is down is only logged (``chat.tools.mcp_client``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat.errors import ConfigError

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # it prefixes tool names: OpenAI's characters
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KEYS = {"url", "headers", "command", "args", "env", "cwd", "type", "acting", "timeout", "disabled"}


@dataclass(frozen=True)
class ServerConfig:
    """One MCP server: ``url`` (streamable HTTP) or ``command`` (stdio)."""

    name: str
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a token
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    acting: tuple[str, ...] = ()
    timeout: float | None = None

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"


def load_config(path: str | Path) -> list[ServerConfig]:
    """The enabled servers of an MCP config file; ``ConfigError`` naming what is wrong."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--mcp-config {file}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"--mcp-config {file}: not valid JSON ({exc})") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(f'--mcp-config {file}: expected {{"mcpServers": {{"name": {{...}}}}}}')
    return [
        parse_server(name, spec, file)
        for name, spec in servers.items()
        if not (isinstance(spec, dict) and spec.get("disabled") is True)
    ]


def parse_server(name: str, spec: Any, file: Path | str = "--mcp-config") -> ServerConfig:
    where = f"{file}: server {name!r}"
    if not SERVER_NAME.match(name):
        raise ConfigError(f"{where}: a name is 1-32 letters, digits, '_' or '-'")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected an object with 'url' or 'command'")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    kind = spec.get("type")
    if kind not in (None, "stdio", "http", "streamable-http", "streamable_http", "streamableHttp"):
        raise ConfigError(f"{where}: type {kind!r} is not supported (streamable HTTP or stdio)")
    url, command = spec.get("url"), spec.get("command")
    if bool(url) == bool(command):
        raise ConfigError(f"{where}: give either 'url' (streamable HTTP) or 'command' (stdio)")
    if url and not (isinstance(url, str) and re.match(r"^https?://", url)):
        raise ConfigError(f"{where}: 'url' must start with http:// or https://")
    timeout = spec.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ConfigError(f"{where}: 'timeout' is a number of seconds above 0")
    return ServerConfig(
        name=name,
        url=_expand(url or "", where),
        headers={k: _expand(v, where) for k, v in _strings(spec, "headers", where).items()},
        command=_expand(command or "", where),
        args=tuple(_expand(a, where) for a in _string_list(spec, "args", where)),
        env={k: _expand(v, where) for k, v in _strings(spec, "env", where).items()},
        cwd=spec.get("cwd") if isinstance(spec.get("cwd"), str) else None,
        acting=tuple(_string_list(spec, "acting", where)),
        timeout=float(timeout) if timeout is not None else None,
    )


def _strings(spec: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = spec.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}: '{key}' must map names to text")
    return value


def _string_list(spec: dict[str, Any], key: str, where: str) -> list[str]:
    value = spec.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of text")
    return value


def _expand(text: str, where: str) -> str:
    """``${NAME}`` from the environment; a missing one is named (its value never is)."""

    def value(match: re.Match[str]) -> str:
        found = os.environ.get(match[1])
        if found is None:
            raise ConfigError(f"{where}: the environment variable {match[1]} is not set")
        return found

    return _VARIABLE.sub(value, text)
