"""The page's tool blocks: each call the assistant made, collapsed, titled in the reader's language.

"Tool: orders.get_order_status" / "工具：orders.get_order_status", with the arguments and the result
(already masked and checked by the output guard) inside. Titled bubbles are display-only: the
page never sends them back to the model as history (``chat.ui.handlers.history_to_messages``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import gradio as gr

from chat.i18n import Lang, t
from chat.messages import ToolUse

TOOL_ID = "tool"  # the blocks' metadata id prefix
SHOWN_CHARS = 2_000  # of a result, in the block: the whole one went to the model


def tool_block(use: ToolUse | Mapping[str, Any], lang: Lang) -> gr.ChatMessage:
    """One call as a collapsed block (``use``: the event, or the dict the store keeps)."""
    data = use.to_dict() if isinstance(use, ToolUse) else dict(use)
    status = str(data.get("status", "ok"))
    seconds = f"{float(data.get('duration') or 0):.1f}"
    detail = t(f"tools.status.{status}", lang, seconds=seconds)
    result = str(data.get("result", ""))
    if len(result) > SHOWN_CHARS:
        result = result[:SHOWN_CHARS] + " …"
    body = (
        f"**{t('tools.arguments', lang)}**\n\n```json\n{_pretty(str(data.get('arguments', '')))}\n```\n\n"
        f"**{t('tools.result', lang)}** ({detail})\n\n```text\n{result.replace('```', 'ʼʼʼ')}\n```"
    )
    title = t("tools.title", lang, name=data.get("name", "?"))
    metadata = {"title": title, "status": "done", "id": f"{TOOL_ID}:{data.get('id', '')}"}
    return gr.ChatMessage(content=body, metadata=metadata)


def tool_blocks(uses: Iterable[ToolUse | Mapping[str, Any]], lang: Lang) -> list[gr.ChatMessage]:
    return [tool_block(use, lang) for use in uses]


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False, indent=2)
    except ValueError:
        return arguments.replace("```", "ʼʼʼ")
