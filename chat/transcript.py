"""Conversations as files: export to Markdown or JSON, import from JSON, and a feedback log.

The JSON format is the OpenAI message list (``[{"role": ..., "content": ...}]``), optionally
wrapped as ``{"messages": [...]}``, so conversations move between this app and other tools.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chat.errors import InvalidRequest
from chat.messages import ROLES, content_text

MAX_IMPORT_BYTES = 5 * 1024 * 1024
FORMAT_VERSION = 1


def plain_messages(history: Sequence[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Gradio chatbot history as OpenAI-style dicts; notice bubbles keep their title as content."""
    out: list[dict[str, str]] = []
    for item in history or []:
        if not isinstance(item, dict) or item.get("role") not in ROLES:
            continue
        title = (item.get("metadata") or {}).get("title")
        if title:
            out.append({"role": "notice", "content": str(title)})
            continue
        out.append({"role": item["role"], "content": content_text(item.get("content"))})
    return out


def to_json(history: Sequence[dict[str, Any]] | None) -> str:
    messages = [m for m in plain_messages(history) if m["role"] != "notice"]
    return json.dumps({"version": FORMAT_VERSION, "messages": messages}, ensure_ascii=False, indent=2)


def to_markdown(history: Sequence[dict[str, Any]] | None) -> str:
    headings = {"user": "**User**", "assistant": "**Assistant**", "system": "**System**"}
    parts = []
    for m in plain_messages(history):
        if m["role"] == "notice":
            parts.append(f"> {m['content']}")
        else:
            parts.append(f"{headings[m['role']]}\n\n{m['content']}")
    return "\n\n---\n\n".join(parts) + "\n"


def from_json(data: bytes | str) -> list[dict[str, str]]:
    """Validate an imported conversation; raise ``InvalidRequest`` saying what is wrong."""
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidRequest(f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the file is not valid JSON ({exc.__class__.__name__})") from None
    messages = parsed.get("messages") if isinstance(parsed, dict) else parsed
    if not isinstance(messages, list):
        raise InvalidRequest('expected a list of messages, or {"messages": [...]}')
    out = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"message {i} needs a role of user or assistant")
        if not isinstance(m.get("content"), str):
            raise InvalidRequest(f"message {i} needs text content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


class FeedbackLog:
    """Likes and dislikes, one JSON object per line, with the conversation they refer to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(
        self, *, liked: bool | None, index: int, history: Sequence[dict[str, Any]] | None, model: str = ""
    ) -> dict:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rating": "like" if liked else "dislike" if liked is False else "none",
            "message_index": index,
            "model": model,
            "conversation": [m for m in plain_messages(history) if m["role"] != "notice"],
        }
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        return entry
