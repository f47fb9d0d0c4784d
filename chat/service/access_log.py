"""One log line per request: request id, entry point, backend, timings and outcome.

``CHAT_LOG_FORMAT=json`` writes JSON lines for a log shipper; ``text`` writes ``key=value``
pairs for a terminal. The user's text and the reply appear only with ``CHAT_LOG_USER_TEXT``;
tokens, keys and headers are never passed in, so they cannot appear.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER = "chat.access"
TEXT_FIELDS = ("user_input", "reply")  # left out unless user text logging is on


def _logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    if not any(getattr(h, "_chat_access", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._chat_access = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


class AccessLog:
    def __init__(self, *, fmt: str = "text", user_text: bool = False) -> None:
        self.fmt = fmt
        self.user_text = user_text
        self.logger = _logger()

    def write(self, fields: dict[str, Any]) -> None:
        """Log one request; ``None`` fields are left out, user text unless allowed."""
        record = {k: v for k, v in fields.items() if v is not None and v != ""}
        if not self.user_text:
            for key in TEXT_FIELDS:
                record.pop(key, None)
        level = logging.WARNING if record.get("outcome") == "error" else logging.INFO
        self.logger.log(level, self.render(record), extra={"chat_access": record})

    def render(self, record: dict[str, Any]) -> str:
        if self.fmt == "json":
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            return json.dumps({"ts": stamp, "event": "request", **record}, ensure_ascii=False)
        return "request " + " ".join(f"{k}={_text_value(v)}" for k, v in record.items())


def _text_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (" " in text or '"' in text or not text) else text
