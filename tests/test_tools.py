"""Tools without the app: the OpenAI tool fields, tool messages, the MCP config file and the call
formats a local model writes (the real model's grammar-held call: tests/test_tools_app.py)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from chat.backends.local.grammars import llama_grammar
from chat.backends.tool_offer import parse_offer
from chat.backends.tool_text import CallReader, forced_format, parse_calls, render
from chat.errors import ConfigError, InvalidRequest
from chat.messages import Message, ToolCall
from chat.tools.config import load_config, parse_server
from chat.tools.mcp_client import McpHub, ToolFailure

SERVERS = Path(__file__).with_name("tool_servers.py")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    },
}


def test_tool_fields_are_checked_with_a_clear_message_in_both_languages() -> None:
    offer = parse_offer([WEATHER], {"type": "function", "function": {"name": "get_weather"}}, False)
    assert offer is not None and offer.named == "get_weather" and not offer.parallel
    assert parse_offer(None, "auto") is None
    with pytest.raises(InvalidRequest) as caught:
        parse_offer([WEATHER], {"type": "function", "function": {"name": "get_time"}})
    assert "get_time" in caught.value.user_message("en") and "get_weather" in caught.value.user_message("en")
    assert "不在 tools 中" in caught.value.user_message("zh")
    with pytest.raises(InvalidRequest, match="letters, digits"):
        parse_offer([{"type": "function", "function": {"name": "has space"}}])
    with pytest.raises(InvalidRequest):
        parse_offer([WEATHER], "sometimes")


def test_tool_messages_travel_in_openai_shape() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    asked = Message.from_dict({"role": "assistant", "content": None, "tool_calls": [call]})
    answered = Message.from_dict({"role": "tool", "tool_call_id": "call_1", "content": "4 °C"})
    assert asked.tool_calls == (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)
    assert asked.to_dict()["tool_calls"] == [call] and answered.to_dict()["tool_call_id"] == "call_1"
    with pytest.raises(InvalidRequest):
        Message.from_dict({"role": "tool", "content": "no id"})


def test_calls_in_the_forms_local_models_write_and_text_that_is_not_one() -> None:
    calls, rest = parse_calls('Let me look.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>')
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("f", {"a": 1})] and rest == "Let me look."
    calls, _ = parse_calls('<|python_tag|>{"name": "f", "parameters": {"a": 2}}')  # Llama 3
    assert json.loads(calls[0].arguments) == {"a": 2}
    assert parse_calls('Use {"name": "f"} in code') == ([], 'Use {"name": "f"} in code')
    assert parse_calls("<tool_call>{broken") == ([], "<tool_call>{broken")


def test_nothing_that_may_start_a_call_is_shown_before_it_is_known() -> None:
    reader = CallReader()
    shown = [
        reader.feed(p) for p in ["Checking", " now <tool", '_call>{"name": "f", "arguments": {}}</tool_call>']
    ]
    assert shown == ["Checking", " now ", ""]
    calls, rest = reader.finish()
    assert [c.name for c in calls] == ["f"] and rest == ""
    reader = CallReader()
    assert "".join(reader.feed(p) for p in ["a <to", "ol> b"]) + reader.finish()[1] == "a <tool> b"


def test_history_with_calls_is_rendered_as_text_for_a_template_without_tools() -> None:
    offer = parse_offer([WEATHER])
    call = ToolCall("c1", "get_weather", '{"city": "Oslo"}')
    shown = render(
        [
            Message("system", "Be brief."),
            Message("user", "Weather in Oslo?"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", "4 °C", tool_call_id="c1"),
        ],
        offer,
    )
    assert [m.role for m in shown] == ["system", "user", "assistant", "user"]
    assert "<tools>" in shown[0].content and '"get_weather"' in shown[0].content
    assert (
        shown[2].content.startswith("<tool_call>")
        and shown[3].content == "<tool_response>\n4 °C\n</tool_response>"
    )


def test_mcp_config_file(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("SHOP_TOKEN", "s3cret")
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "shop": {
                        "url": "http://127.0.0.1:1/mcp",
                        "headers": {"Authorization": "Bearer ${SHOP_TOKEN}"},
                    },
                    "files": {"command": "python", "args": ["x.py"], "acting": ["write_*"]},
                    "old": {"url": "http://x/mcp", "disabled": True},
                }
            }
        )
    )
    shop, files = load_config(path)
    assert shop.headers == {"Authorization": "Bearer s3cret"} and "s3cret" not in repr(shop)
    assert files.transport == "stdio" and files.acting == ("write_*",)
    path.write_text(json.dumps({"mcpServers": {"x": {"url": "http://h/${MISSING_VAR}"}}}))
    with pytest.raises(ConfigError, match="MISSING_VAR"):
        load_config(path)
    path.write_text(json.dumps({"mcpServers": {"x": {"url": "http://h", "command": "y"}}}))
    with pytest.raises(ConfigError, match="either 'url'"):
        load_config(path)


def test_a_server_that_goes_away_is_reconnected_and_its_tools_listed_again() -> None:
    """A real stdio server whose process dies: the next call says the server is unavailable (a
    result, not a crash), and the hub starts it again and lists its tools anew."""
    server = parse_server("files", {"command": sys.executable, "args": [str(SERVERS), "stdio"]})
    hub = McpHub([server]).start()
    try:
        assert "read_note" in [tool.name for tool in hub.tools()]
        first = int(hub.call("files", "process_id", {}, timeout=10).text)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(ToolFailure) as failed:
            hub.call("files", "read_note", {"name": "x"}, timeout=10)
        assert failed.value.kind == "unavailable"
        deadline = time.monotonic() + 20
        while not hub.connected("files") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "read_note" in [tool.name for tool in hub.tools()]
        assert int(hub.call("files", "process_id", {}, timeout=10).text) != first
    finally:
        hub.close()


def test_a_required_choice_over_several_tools_is_a_grammar_llama_cpp_accepts() -> None:
    time_tool = {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
    offer = parse_offer([WEATHER, time_tool], "required")
    response_format = forced_format(offer)
    assert llama_grammar(response_format) is not None  # compiles: anyOf of the two calls
    assert forced_format(parse_offer([WEATHER], "auto")) is None
