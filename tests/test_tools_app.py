"""Tools through the running app, one app for the module: real MCP servers (FastMCP over
streamable HTTP on loopback and over stdio), the real OpenAI SDK against /v1, an MCP client
against --mcp-server, and a scripted OpenAI-compatible model on loopback (tests/scripted_model.py
says why it is scripted) for the loop itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import httpx
import pytest
from guard_fakes import ScriptedBackend
from scripted_model import ScriptedModel
from service_support import serve, service_engine
from starlette.requests import Request
from support import frames, free_port
from tool_servers import LEAKED_KEY

from chat import ChatEngine, Settings
from chat.backends.openai_compat import OpenAICompatBackend
from chat.factory import build_cache
from chat.guards import build_guard
from chat.service.door.identity import OWNER_KEY, api_owner
from chat.ui.sidebar import ConversationList

TOKEN = "tools-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HERE = Path(__file__).parent
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class World:
    def __init__(self, url: str, model: ScriptedModel, app) -> None:  # noqa: ANN001
        self.url = url
        self.model = model
        self.app = app

    def chat(self, text: str, **context) -> dict:  # noqa: ANN003
        body = {"user_input": text, "context": {"backend": "cloud", **context}}
        response = httpx.post(self.url + "api/chat", json=body, headers=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def world(local_backend, tmp_path_factory) -> Iterator[World]:  # noqa: ANN001
    from chat.server import Server, build_app

    port = free_port()
    shop = subprocess.Popen([sys.executable, str(HERE / "tool_servers.py"), "http", str(port)])
    model = ScriptedModel()
    folder = tmp_path_factory.mktemp("tools")
    config = folder / "mcp.json"
    servers = {
        "shop": {"url": f"http://127.0.0.1:{port}/mcp", "acting": ["cancel_*"]},
        "files": {
            "command": sys.executable,
            "args": [str(HERE / "tool_servers.py"), "stdio"],
            "env": {"NOTES_LABEL": "from-env"},
        },
        "down": {"url": f"http://127.0.0.1:{free_port()}/mcp"},  # nobody listens: logged, skipped
    }
    config.write_text(json.dumps({"mcpServers": servers}))
    _wait_for_port(port)
    # The scripted model first: it is the default backend, so MCP's ask needs no real model.
    guard = build_guard(Settings())  # the app's own guards and reply cache, as it runs
    engine = ChatEngine(
        {"cloud": OpenAICompatBackend(model.url, "scripted-model"), "local": local_backend},
        input_guard=guard,
        output_guard=guard,
        cache=build_cache(Settings()),
    )
    settings = Settings(
        port=free_port(),
        n_ctx=2048,
        api_token=TOKEN,
        mcp_config=str(config),
        mcp_server=True,
        max_tool_rounds=2,
        tool_timeout=1.0,
    )
    app = build_app(engine, settings)
    server = Server(app, host="127.0.0.1", port=settings.port)
    server.start()
    try:
        yield World(server.local_url, model, app)
    finally:
        server.stop()
        shop.kill()
        shop.wait()
        model.close()


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the MCP test server did not start")


# -- /v1: the client's own tools ----------------------------------------------------------------


def test_openai_sdk_round_trip_with_a_client_side_tool(world: World) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=world.url + "v1", api_key=TOKEN)
    asked = [{"role": "user", "content": 'call get_weather {"city": "Oslo"}'}]
    first = client.chat.completions.create(model="cloud", messages=asked, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    # The client runs its tool and sends the result back, streamed this time.
    follow = [
        *asked,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "4 °C"},
    ]
    stream = client.chat.completions.create(model="cloud", messages=follow, tools=[WEATHER], stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Tool said: 4 °C"
    sent = world.model.seen[-1]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]  # no MCP tool mixed in
    assert sent["messages"][-1] == {"role": "tool", "content": "4 °C", "tool_call_id": call.id}


def test_streamed_tool_calls_arrive_as_openai_streams_them(world: World) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=world.url + "v1", api_key=TOKEN)
    asked = [
        {"role": "user", "content": 'call get_weather {"city": "Oslo"} call get_weather {"city": "Rome"}'}
    ]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(model="cloud", messages=asked, tools=[WEATHER], stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += delta.id or ""
                entry["name"] += (delta.function.name or "") if delta.function else ""
                entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert [json.loads(c["arguments"])["city"] for c in calls.values()] == ["Oslo", "Rome"]
    assert all(c["id"] and c["name"] == "get_weather" for c in calls.values())


def test_a_named_tool_choice_on_the_local_model_returns_a_schema_held_call(world: World) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=world.url + "v1", api_key=TOKEN)
    reply = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=48,
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and isinstance(
        json.loads(call.function.arguments)["city"], str
    )


def test_bad_tool_fields_are_a_400_in_the_users_language(world: World) -> None:
    body = {
        "model": "cloud",
        "messages": [{"role": "user", "content": "你好"}],
        "tools": [{"type": "function"}],
    }
    response = httpx.post(world.url + "v1/chat/completions", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 400 and "tools[0]" in response.json()["error"]["message"]
    assert "必须" in response.json()["error"]["message"]


# -- the loop on /api/chat, /ws and the page ---------------------------------------------------


def test_api_chat_runs_the_mcp_tool_and_keeps_the_call_with_the_turn(world: World) -> None:
    answer = world.chat('call shop__get_order_status {"order_id": "A17"}')
    assert answer["reply"] == "Tool said: Order A17: shipped 2026-12-01 with ParcelCo, arriving 2026-12-04."
    (use,) = answer["tool_calls"]
    assert use["name"] == "shop.get_order_status" and json.loads(use["arguments"]) == {"order_id": "A17"}
    assert use["status"] == "ok" and use["result"].startswith("Order A17") and use["duration"] >= 0
    offered = [t["function"]["name"] for t in world.model.seen[-1]["tools"]]
    assert "shop__get_order_status" in offered and "files__read_note" in offered
    assert not any(name.startswith("down__") for name in offered)  # the server that is down
    stored = httpx.get(world.url + f"api/conversations/{answer['conversation_id']}", headers=AUTH).json()
    reply = stored["messages"][-1]
    assert reply["tool_calls"][0]["name"] == "shop.get_order_status" and reply["content"] == answer["reply"]
    # Reopened on the page: the call's block comes back before the reply, as it streamed.
    scope = {"type": "http", "headers": [], "state": {OWNER_KEY: api_owner(TOKEN)}}
    opened = ConversationList(world.app.state.store).open(
        answer["conversation_id"], gr.Request(Request(scope))
    )
    titles = [(m.metadata or {}).get("title") if isinstance(m, gr.ChatMessage) else None for m in opened[2]]
    assert titles.index("Tool: shop.get_order_status") == len(titles) - 2  # then the reply


def test_every_way_a_call_can_fail_is_a_result_and_the_reply_still_comes(world: World) -> None:
    calls = [
        'call shop__slow {"seconds": 5}',
        "call shop__broken {}",
        "call shop__huge {}",
        "call shop__nope {}",
        'call shop__get_order_status {"order_id": 17}',
        'call shop__get_order_status {"order_id": }',
        "call shop__config_dump {}",
        'call files__read_note {"name": "n1"}',
        'call shop__cancel_order {"order_id": "A17"}',
    ]
    started = time.monotonic()
    answer = world.chat(" ".join(calls))
    assert time.monotonic() - started < 8  # the slow tool is cut at --tool-timeout (1 s)
    uses = answer["tool_calls"]
    assert [u["status"] for u in uses] == [
        "timeout",
        "error",
        "ok",
        "unknown",
        "invalid",
        "invalid",
        "ok",
        "ok",
        "declined",
    ]
    assert "warehouse database is down" in uses[1]["result"]
    assert len(uses[2]["result"]) < 9_000 and "1048576" in uses[2]["result"]  # cut, and said so
    assert "order_id" in uses[4]["result"] and "JSON" in uses[5]["result"]
    assert LEAKED_KEY not in uses[6]["result"] and LEAKED_KEY not in json.dumps(world.model.seen[-1])
    assert uses[7]["result"] == "from-env: note n1 says hello"  # stdio, with its environment
    assert answer["reply"].startswith("Tool said:")  # the model read the last result and answered
    results = [m for m in world.model.seen[-1]["messages"] if m["role"] == "tool"]
    assert len(results) == len(calls) and "did not answer within 1" in results[0]["content"]


def test_results_are_guarded_before_anyone_sees_them_and_never_replayed_from_the_cache(world: World) -> None:
    blocked = world.chat("call shop__phishing_text {}")
    (use,) = blocked["tool_calls"]
    assert use["status"] == "blocked" and "password" not in use["result"]
    assert "password" not in json.dumps(world.model.seen[-1]["messages"][-1])  # nor does the model
    asked = 'call shop__get_order_status {"order_id": "F6"}'
    first, second = world.chat(asked), world.chat(asked)
    assert first["reply"] == second["reply"] and not second["from_cache"]
    assert [u["status"] for u in second["tool_calls"]] == ["ok"]  # the tool ran again


def test_a_loop_that_would_not_end_stops_at_max_tool_rounds(world: World) -> None:
    before = len(world.model.seen)
    answer = world.chat('Please always call: call shop__get_order_status {"order_id": "B2"}')
    assert [u["status"] for u in answer["tool_calls"]] == ["ok", "ok"]  # --max-tool-rounds 2
    assert len(world.model.seen) - before == 3 and world.model.seen[-1]["tool_choice"] == "none"
    assert any(n["kind"] == "tool_rounds" for n in answer["notices"])
    assert answer["reply"].startswith("Tool said: Order B2")
    # The same reply as server-sent events: each call is an event of its own before "done".
    body = {
        "user_input": 'call shop__get_order_status {"order_id": "B3"}',
        "stream": True,
        "context": {"backend": "cloud"},
    }
    with httpx.stream("POST", world.url + "api/chat", json=body, headers=AUTH, timeout=30) as response:
        events = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert events.index("tool_call") < events.index("done")


def test_ws_streams_each_call_then_the_reply(world: World) -> None:
    from websockets.sync.client import connect

    with connect(world.url.replace("http", "ws") + "ws?token=" + TOKEN) as ws:
        ws.send(
            json.dumps(
                {
                    "user_input": 'call shop__get_order_status {"order_id": "C3"}',
                    "context": {"backend": "cloud"},
                }
            )
        )
        frames_seen = []
        while not frames_seen or frames_seen[-1]["type"] not in ("done", "error"):
            frames_seen.append(json.loads(ws.recv(timeout=20)))
    kinds = [f["type"] for f in frames_seen]
    assert "tool_call" in kinds and kinds.index("tool_call") < kinds.index("done")
    tool_frame = frames_seen[kinds.index("tool_call")]
    assert tool_frame["name"] == "shop.get_order_status" and tool_frame["status"] == "ok"
    assert frames_seen[-1]["tool_calls"][0]["name"] == "shop.get_order_status"


def test_the_page_shows_each_call_as_a_collapsed_block_in_the_users_language(world: World) -> None:
    from chat.ui import ChatHandlers

    handlers = ChatHandlers(world.app.state.service.observed("gradio"))
    defaults = ("", 0.0, 1024, 64, 0.95, "cloud")
    for text, title in [
        ('call shop__get_order_status {"order_id": "D4"}', "Tool: shop.get_order_status"),
        ('查一下订单 call shop__get_order_status {"order_id": "D5"}', "工具：shop.get_order_status"),
    ]:
        bubbles, _ = list(frames(handlers.ui(text, [], *defaults)))[-1]
        blocks = [b for b in bubbles if (b.metadata or {}).get("title") == title]
        assert len(blocks) == 1 and blocks[0].metadata["status"] == "done" and "ParcelCo" in blocks[0].content
        assert bubbles[-1].content.startswith("Tool said: Order D")


# -- the app as an MCP server -------------------------------------------------------------------


def _mcp(url: str, headers: dict[str, str], work):  # noqa: ANN001, ANN202
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def session() -> object:
        async with (
            create_mcp_http_client(headers=headers) as client,
            streamable_http_client(url + "gradio_api/mcp/", http_client=client) as (read, write, _),
            ClientSession(read, write) as mcp,
        ):
            await mcp.initialize()
            return await work(mcp)

    return asyncio.run(session())


def test_the_mcp_server_offers_curated_tools_behind_the_door(world: World) -> None:
    async def work(mcp) -> tuple:  # noqa: ANN001
        listed = await mcp.list_tools()
        asked = await mcp.call_tool("ask", {"question": "Hello there"})
        bases = await mcp.call_tool("list_knowledge_bases", {})
        return listed, asked, bases

    listed, asked, bases = _mcp(world.url, AUTH, work)
    assert sorted(t.name for t in listed.tools) == ["ask", "list_knowledge_bases", "search_knowledge"]
    assert not asked.isError and asked.content[0].text == "No tool was needed."
    assert isinstance(json.loads(bases.content[0].text), list)
    with pytest.raises(BaseException) as refused:  # noqa: PT011 - the SDK wraps it in task groups
        _mcp(world.url, {}, work)
    assert "401" in repr(refused.value) or "401" in str(refused.value.__context__)
    no_token = httpx.post(
        world.url + "gradio_api/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )
    assert no_token.status_code == 401


def test_mcp_ask_spends_the_rate_limit_and_is_refused_past_it() -> None:
    # An app of its own: the module's app has no rate limit, and one spent here would stop its tests.
    engine = service_engine(ScriptedBackend(["Hello", " there."]))

    async def work(mcp) -> list:  # noqa: ANN001
        await mcp.list_tools()  # listing is no message: it spends nothing
        questions = ["First question", "Second question", "Third question", "第四个问题是什么"]
        return [await mcp.call_tool("ask", {"question": q}) for q in questions]

    with serve(engine, api_token=TOKEN, mcp_server=True, rate_limit=2) as url:
        first, second, third, fourth = _mcp(url, AUTH, work)
    assert [r.isError for r in (first, second)] == [False, False]
    assert first.content[0].text == second.content[0].text == "Hello there."
    assert third.isError and fourth.isError
    assert "too many requests: the limit is 2 per minute per client" in third.content[0].text
    assert "每个客户端每分钟最多 2 次" in fourth.content[0].text
    assert "Traceback" not in third.content[0].text + fourth.content[0].text


def test_an_acting_tool_runs_only_after_the_user_says_yes(world: World) -> None:
    asked = world.chat('call shop__cancel_order {"order_id": "E5"}')
    assert [u["status"] for u in asked["tool_calls"]] == ["declined"]
    (confirm,) = [n for n in asked["notices"] if n["kind"] == "confirm"]
    assert "shop.cancel_order" in confirm["text"] and "yes" in confirm["text"]
    again = {
        "user_input": "yes",
        "conversation_id": asked["conversation_id"],
        "context": {"backend": "cloud"},
    }
    done = httpx.post(world.url + "api/chat", json=again, headers=AUTH, timeout=30).json()
    assert [(u["name"], u["status"], u["result"]) for u in done["tool_calls"]] == [
        ("shop.cancel_order", "ok", "Order E5 is cancelled.")
    ]
    assert done["reply"] == "Tool said: Order E5 is cancelled."
    # A yes with nothing held (or in another conversation) runs nothing.
    other = world.chat("yes")
    assert other["tool_calls"] == []
