"""One log line per request: request id, entry point, backend, timings and outcome.

``CHAT_LOG_FORMAT=json`` writes JSON lines for a log shipper; ``text`` writes ``key=value``
pairs for a terminal. The user's text and the reply appear only with ``CHAT_LOG_USER_TEXT``;
tokens, keys and headers are never passed in, so they cannot appear.

Every field is bounded (``MAX_FIELD`` characters, ``MAX_TEXT`` for user text) and control,
format and line-separator characters are written as ``\\uXXXX`` escapes, so a client cannot
forge a log line, hide text from a terminal or fill the disk through one field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Any

LOGGER = "chat.access"
TEXT_FIELDS = ("user_input", "reply")  # left out unless user text logging is on
MAX_FIELD = 200  # characters of one field (ids, names, kinds, addresses)
MAX_TEXT = 2000  # characters of the user's message or the reply, when they are logged
UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})  # Unicode categories to escape
_BARE = re.compile(r'[^\s"=\\]+')  # a text-format value that needs no quotes


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
        record = {k: _bounded(k, v) for k, v in fields.items() if v is not None and v != ""}
        if not self.user_text:
            for key in TEXT_FIELDS:
                record.pop(key, None)
        level = logging.WARNING if record.get("outcome") == "error" else logging.INFO
        self.logger.log(level, self.render(record), extra={"chat_access": record})

    def render(self, record: dict[str, Any]) -> str:
        if self.fmt == "json":
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            return escape_unsafe(json.dumps({"ts": stamp, "event": "request", **record}, ensure_ascii=False))
        return "request " + " ".join(f"{k}={_text_value(v)}" for k, v in record.items())


def _bounded(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    limit = MAX_TEXT if key in TEXT_FIELDS else MAX_FIELD
    return value if len(value) <= limit else f"{value[:limit]}…[{len(value) - limit} more]"


def _text_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if _BARE.fullmatch(text) and text.isprintable():
        return text
    return escape_unsafe(json.dumps(text, ensure_ascii=False))


def escape_unsafe(text: str) -> str:
    """``text`` with control, format, separator and unassigned characters as JSON ``\\u`` escapes.

    Applied to JSON text, the result is still valid JSON that decodes to the same strings.
    """
    if text.isprintable():  # the fast path: nothing to escape
        return text
    return "".join(_escape(c) if unicodedata.category(c) in UNSAFE else c for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
