"""Sessions with the operator's MCP servers, held open on one event loop of their own.

The official ``mcp`` SDK is async; replies run on worker threads. ``McpHub`` keeps one task per
server on a background loop: it connects (streamable HTTP or a stdio child process), lists the
server's tools, and holds the session; a call from any thread runs on that loop with its own
timeout. A server that is down is logged and retried with growing pauses, never fatal, and its
tools are listed again each time it reconnects. A call that fails below the tool (a closed
connection, a timeout) has the server pinged, and a server that does not answer is reconnected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio

from chat.tools.config import ServerConfig

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds a server gets to connect and list its tools
PING_TIMEOUT = 5.0
RECONNECT_FIRST, RECONNECT_MAX = 1.0, 60.0  # pauses between attempts, doubling up to the max
POLL = 0.1  # how often a waiting call looks at Stop


@dataclass(frozen=True)
class RemoteTool:
    """A tool as its server lists it: its own ``name``, what it does, its JSON schema."""

    server: str
    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class CallOutcome:
    """What a tool returned, as text, and whether the tool itself said it failed."""

    text: str
    is_error: bool = False


class ToolFailure(Exception):  # noqa: N818 - kinds of outcome, told to the model as the result
    """The call did not reach a result: ``kind`` is unavailable, timeout or cancelled."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail or kind)
        self.kind = kind


class _Link:
    """One server's session, as its task keeps it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.session: Any = None  # mcp.ClientSession while connected
        self.tools: tuple[RemoteTool, ...] = ()
        self.tried = threading.Event()  # the first attempt ended, connected or not
        self.check: asyncio.Event | None = None  # set: ping the server, reconnect if it is gone
        self.ended: anyio.Event | None = None  # set when this connection's transport ends


class McpHub:
    """Every configured server's session; ``tools()`` and ``call()`` from any thread.

    >>> hub = McpHub(load_config("mcp.json")).start()
    >>> hub.call("orders", "get_order_status", {"order_id": "A17"}, timeout=20)
    """

    def __init__(self, servers: Sequence[ServerConfig], *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.links = {config.name: _Link(config) for config in servers}
        self.connect_timeout = connect_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="mcp-client", daemon=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> McpHub:
        """Connect to every server; returns once each has connected or failed its first try."""
        self._thread.start()
        deadline = time.monotonic() + self.connect_timeout + 1
        for link in self.links.values():
            link.tried.wait(max(deadline - time.monotonic(), 0))
        return self

    def tools(self) -> list[RemoteTool]:
        """The tools of the servers connected now, in the config's order."""
        return [tool for link in self.links.values() if link.session is not None for tool in link.tools]

    def connected(self, server: str) -> bool:
        link = self.links.get(server)
        return link is not None and link.session is not None

    def call(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> CallOutcome:
        """Run one tool; ``ToolFailure`` when no result came (down, timed out, Stop)."""
        link = self.links.get(server)
        if link is None or link.session is None or self._closing:
            raise ToolFailure("unavailable")
        future = asyncio.run_coroutine_threadsafe(self._call(link, tool, arguments, timeout), self._loop)
        deadline = time.monotonic() + timeout + PING_TIMEOUT
        while True:
            try:
                return future.result(POLL)
            except concurrent.futures.TimeoutError:
                if cancel is not None and cancel.is_set():
                    future.cancel()
                    raise ToolFailure("cancelled") from None
                if time.monotonic() >= deadline:
                    future.cancel()
                    raise ToolFailure("timeout") from None

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._closing = True

        def stop() -> None:
            for task in self._tasks:
                task.cancel()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(10)

    # -- on the hub's loop ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._tasks = [self._loop.create_task(self._supervise(link)) for link in self.links.values()]
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
        self._loop.close()

    async def _supervise(self, link: _Link) -> None:
        pause = RECONNECT_FIRST
        link.check = asyncio.Event()
        while not self._closing:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    session = await self._connect(link, stack)
                    log.info("MCP server %s: connected, %d tool(s)", link.config.name, len(link.tools))
                    link.session, pause = session, RECONNECT_FIRST
                    link.tried.set()
                    await self._hold(link, session)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - any failure of a server is logged, never fatal
                log.warning(
                    "MCP server %s: unavailable (%s); retrying in %.0f s", link.config.name, _why(exc), pause
                )
            finally:
                link.session = None
                link.tried.set()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX)

    async def _connect(self, link: _Link, stack: contextlib.AsyncExitStack) -> Any:
        from mcp import ClientSession

        config = link.config
        if config.url:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            client = await stack.enter_async_context(create_mcp_http_client(headers=config.headers or None))
            read, write, _ = await stack.enter_async_context(
                streamable_http_client(config.url, http_client=client)
            )
        else:
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(
                command=config.command, args=list(config.args), env=config.env or None, cwd=config.cwd
            )
            read, write = await stack.enter_async_context(stdio_client(params))
        session = await stack.enter_async_context(
            ClientSession(await self._watched(link, read, stack), write)
        )
        with anyio.fail_after(self.connect_timeout):  # in this task: the SDK's scopes must nest
            await session.initialize()
            listed = await session.list_tools()
        link.tools = tuple(
            RemoteTool(config.name, tool.name, tool.description or "", dict(tool.inputSchema or {}))
            for tool in listed.tools
        )
        return session

    async def _watched(self, link: _Link, read: Any, stack: contextlib.AsyncExitStack) -> Any:
        """``read`` passed on to the session through a stream of ours, which notes when the
        transport ends: the SDK fails the calls waiting then, but not the calls made after it."""
        forward, watched = anyio.create_memory_object_stream[Any](0)
        link.ended = ended = anyio.Event()

        async def pass_on() -> None:
            async with forward:
                async for message in read:
                    await forward.send(message)
            ended.set()
            link.session = None  # no new call starts on it; the supervisor reconnects
            self._check(link)

        tasks = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tasks.cancel_scope.cancel)  # runs first on the way out: the stream ends too
        tasks.start_soon(pass_on)
        return watched

    async def _hold(self, link: _Link, session: Any) -> None:
        """Keep the session until its transport ends or a failed call's ping finds the server
        gone (or the hub closes)."""
        assert link.check is not None
        while True:
            await link.check.wait()
            link.check.clear()
            if link.ended is not None and link.ended.is_set():
                raise ConnectionError("the server closed the connection")
            with anyio.fail_after(PING_TIMEOUT):
                await session.send_ping()

    async def _call(self, link: _Link, tool: str, arguments: dict[str, Any], timeout: float) -> CallOutcome:
        from mcp.shared.exceptions import McpError
        from mcp.types import CONNECTION_CLOSED

        session, ended = link.session, link.ended
        if session is None or ended is None or ended.is_set():
            raise ToolFailure("unavailable")
        try:
            with anyio.fail_after(timeout):
                result = await _unless_ended(
                    session.call_tool(tool, arguments, read_timeout_seconds=timedelta(seconds=timeout)), ended
                )
        except TimeoutError:
            self._check(link)
            raise ToolFailure("timeout") from None
        except McpError as exc:
            message = exc.error.message
            if "timed out" in message.lower():  # the SDK's own read timeout
                self._check(link)
                raise ToolFailure("timeout") from None
            if exc.error.code == CONNECTION_CLOSED:
                self._check(link)
                raise ToolFailure("unavailable", message) from None
            return CallOutcome(message, is_error=True)  # the server refused the call
        except Exception as exc:  # noqa: BLE001 - a transport failure: the server may be gone
            self._check(link)
            raise ToolFailure("unavailable", _why(exc)) from None
        return CallOutcome(result_text(result), bool(result.isError))

    @staticmethod
    def _check(link: _Link) -> None:
        if link.check is not None:
            link.check.set()


class _Ended(Exception):  # noqa: N818 - a signal between two tasks
    pass


async def _unless_ended(call: Any, ended: anyio.Event) -> Any:
    """``await call``, or ``ToolFailure`` when the transport ends first: the SDK fails the calls
    waiting when it ends, but not one sent just after (it would wait out its whole timeout)."""
    box: list[Any] = []
    async with anyio.create_task_group() as tasks:

        async def run() -> None:
            try:
                box.append(await call)
            except Exception as exc:  # noqa: BLE001 - raised again below, in the caller's task
                box.append(exc)
            tasks.cancel_scope.cancel()

        tasks.start_soon(run)
        await ended.wait()
        tasks.cancel_scope.cancel()
    if not box:
        raise ToolFailure("unavailable", "the server closed the connection")
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]


def result_text(result: Any) -> str:
    """A ``CallToolResult`` as text: its text parts; other parts named; else its structured data."""
    parts: list[str] = []
    for item in result.content or ():
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind == "resource" and isinstance(getattr(item.resource, "text", None), str):
            parts.append(item.resource.text)
        else:
            parts.append(f"[{kind or 'unknown'} content]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n".join(parts)


def _why(exc: BaseException) -> str:
    """A short reason for the log: the first leaf of an exception group, its type and message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
