"""Conversations as files: export to Markdown or JSON, import from JSON, and a feedback log.

Both kinds of file are bounded: exports live in one folder that keeps only the newest few, and
the feedback log rotates by size.

The JSON format is the OpenAI message list (``[{"role": ..., "content": ...}]``), optionally
wrapped as ``{"messages": [...]}``, so conversations move between this app and other tools.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chat.engine.reasoning import THINKING_ID
from chat.errors import InvalidRequest
from chat.messages import ROLES, content_text
from chat.settings import FEEDBACK_LOG_BACKUPS, FEEDBACK_LOG_MAX_BYTES

MAX_IMPORT_BYTES = 5 * 1024 * 1024
FORMAT_VERSION = 1
EXPORTS_KEPT = 32  # export files kept on disk at once (Gradio copies each one when it is made)


def plain_messages(history: Sequence[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Gradio chatbot history as OpenAI-style dicts; notice bubbles keep their title as content.

    A reasoning model's thinking bubble is left out: it is not part of the reply, and an
    imported conversation must not feed it back to a model."""
    out: list[dict[str, str]] = []
    for item in history or []:
        if not isinstance(item, dict) or item.get("role") not in ROLES:
            continue
        if (item.get("metadata") or {}).get("id") == THINKING_ID:
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


class ExportFolder:
    """Where conversation downloads are written: one folder per app, with at most ``keep`` files.

    Gradio copies a returned file into its own cache as soon as the handler returns, so a file
    here is needed only for a moment. Each export gets a folder of its own (two exports in the
    same second must not overwrite each other: they may be different users' conversations), and
    each new one removes all but the newest ``keep``. The folder itself goes when the app exits.
    """

    def __init__(self, *, keep: int = EXPORTS_KEPT) -> None:
        self.keep = keep
        self._dir = tempfile.TemporaryDirectory(prefix="chat-export-")
        self.root = Path(self._dir.name)
        self._lock = threading.Lock()
        self._made: deque[Path] = deque()

    def write(self, history: Sequence[dict[str, Any]] | None, kind: str) -> Path:
        """The conversation as ``conversation-<time>.md`` (or ``.json``), ready to download."""
        body = to_markdown(history) if kind == "md" else to_json(history)
        with self._lock:
            name = f"conversation-{time.strftime('%Y%m%d-%H%M%S')}.{'md' if kind == 'md' else 'json'}"
            path = Path(tempfile.mkdtemp(dir=self.root)) / name
            path.write_text(body, encoding="utf-8")
            self._made.append(path.parent)
            while len(self._made) > self.keep:
                shutil.rmtree(self._made.popleft(), ignore_errors=True)
        return path

    def files(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file()]


def from_json(data: bytes | str) -> list[dict[str, str]]:
    """Validate an imported conversation; raise ``InvalidRequest`` saying what is wrong."""
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidRequest(reason="import.too_large", limit=MAX_IMPORT_BYTES // (1024 * 1024))
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(reason="import.not_json", error=exc.__class__.__name__) from None
    messages = parsed.get("messages") if isinstance(parsed, dict) else parsed
    if not isinstance(messages, list):
        raise InvalidRequest(reason="import.not_list")
    out = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise InvalidRequest(reason="import.role", index=i)
        if not isinstance(m.get("content"), str):
            raise InvalidRequest(reason="import.content", index=i)
        out.append({"role": m["role"], "content": m["content"]})
    return out


class FeedbackLog:
    """Likes and dislikes, one JSON object per line, with the conversation they refer to.

    The file is bounded: a line that would take it past ``max_bytes`` first moves it to
    ``<name>.1`` (``.1`` to ``.2``, and so on; the oldest of ``backups`` is dropped), so the log
    keeps about ``(backups + 1) * max_bytes`` bytes however long the app runs (an entry larger than
    ``max_bytes`` alone still gets a file of its own). Writers in one
    process share one lock per file, so lines never interleave and no rotation is lost.
    """

    _locks: dict[Path, threading.Lock] = {}
    _locks_lock = threading.Lock()

    def __init__(
        self, path: Path, *, max_bytes: int = FEEDBACK_LOG_MAX_BYTES, backups: int = FEEDBACK_LOG_BACKUPS
    ) -> None:
        if max_bytes < 1 or backups < 0:
            raise ValueError("max_bytes must be positive and backups 0 or more")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        with self._locks_lock:
            self._lock = self._locks.setdefault(path.resolve(), threading.Lock())

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
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            with self.path.open("ab") as f:
                f.write(line)
        return entry

    def files(self) -> list[Path]:
        """The log and its backups that exist, newest first."""
        return [p for p in (self.path, *map(self._backup, range(1, self.backups + 1))) if p.exists()]

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        if not self.backups:
            self.path.unlink()
            return
        for n in range(self.backups - 1, 0, -1):
            if self._backup(n).exists():
                self._backup(n).replace(self._backup(n + 1))
        self.path.replace(self._backup(1))
