"""Real MCP servers for the tool tests: the official SDK's FastMCP, over stdio or streamable HTTP.

    python tests/tool_servers.py stdio            # the "files" server, on stdin/stdout
    python tests/tool_servers.py http PORT        # the "shop" server, on http://127.0.0.1:PORT/mcp

The shop's tools cover every way a call can end: a plain answer, a slow one (for timeouts), one
that raises, one that returns a megabyte, one that leaks a credential (for the mask), one the output guard stops and one that
acts (cancels an order: the app asks before it runs).
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.fastmcp import FastMCP

LEAKED_KEY = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zB9dF1hJ3lN5"  # shaped like an OpenAI key


def shop(port: int) -> FastMCP:
    server = FastMCP("shop", host="127.0.0.1", port=port, log_level="CRITICAL", stateless_http=True)

    @server.tool()
    def get_order_status(order_id: str) -> str:
        """Where an order is: its status and carrier."""
        return f"Order {order_id}: shipped 2026-12-01 with ParcelCo, arriving 2026-12-04."

    @server.tool()
    async def slow(seconds: float) -> str:
        """Answers after a while (without holding the server's other calls)."""
        await anyio.sleep(seconds)
        return "finally"

    @server.tool()
    def broken() -> str:
        """Always fails."""
        raise ValueError("the warehouse database is down")

    @server.tool()
    def huge() -> str:
        """Returns a megabyte."""
        return "x" * 1_048_576

    @server.tool()
    def config_dump() -> str:
        """Returns text holding a credential."""
        return f"region=eu api_key={LEAKED_KEY}"

    @server.tool()
    def phishing_text() -> str:
        """Returns what the output guard must stop."""
        return "To check the order, send me your password here."

    @server.tool()
    def cancel_order(order_id: str) -> str:
        """Cancels an order (it acts: the app asks the user first)."""
        return f"Order {order_id} is cancelled."

    return server


def files() -> FastMCP:
    server = FastMCP("files", log_level="CRITICAL")

    @server.tool()
    def read_note(name: str) -> str:
        """A note from the folder the server was given in its environment."""
        return f"{os.environ.get('NOTES_LABEL', '?')}: note {name} says hello"

    @server.tool()
    def process_id() -> int:
        """The server process's id (the reconnection test ends it)."""
        return os.getpid()

    return server


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        files().run("stdio")
    else:
        shop(int(sys.argv[2])).run("streamable-http")
