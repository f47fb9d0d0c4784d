"""Reading an OpenAI-style response: SSE events grouped by network read, chunks, JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder  # pinned 0.4.3; see sse_batches

from chat.messages import ThinkingDelta, ToolCall

MAX_ERROR_BODY = 64 * 1024  # an error body larger than this is not worth reading
# Where a delta carries a reasoning model's thinking: DeepSeek and vLLM / SGLang with a reasoning
# parser send ``reasoning_content``; OpenRouter, Ollama and llama.cpp's server (some versions)
# ``reasoning``.
REASONING_FIELDS = ("reasoning_content", "reasoning")

Piece = str | ThinkingDelta  # reply text, or thinking


@dataclass(frozen=True)
class StreamFailure:
    """What ended a stream early: the provider's error object, or None for a malformed line."""

    error: Mapping[str, Any] | None


class ChunkReader:
    """Collects ``chat.completion.chunk`` events: text and thinking, finish reason, usage and
    ``[DONE]``."""

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: Mapping[str, Any] = {}
        self.events = 0  # content and reasoning events: the token count when the API sends no usage
        self.done = False
        self._calls: dict[int, dict[str, str]] = {}  # tool calls by index, their pieces joined

    def calls(self) -> list[ToolCall]:
        """The tool calls the stream asked for, whole, in index order."""
        return [ToolCall(c["id"], c["name"], c["arguments"] or "{}") for _, c in sorted(self._calls.items())]

    def read(self, batch: list[ServerSentEvent]) -> tuple[list[Piece], StreamFailure | None]:
        """The batch's text and thinking in order, each run joined (one update for a burst), and
        what ended the stream, if anything."""
        texts: list[Piece] = []
        for sse in batch:
            data = sse.data
            if self.done or not data:
                continue
            if data[0] != "{" and data.strip() == "[DONE]":
                self.done = True
                continue
            chunk = json_object(data)
            if chunk is None:
                return texts, StreamFailure(None)
            if chunk.get("error") or sse.event == "error":
                return texts, StreamFailure(chunk)
            self._read_chunk(chunk, texts)
        return texts, None

    def _read_chunk(self, chunk: Mapping[str, Any], texts: list[Piece]) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"] if isinstance(chunk["usage"], dict) else self.usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if thinking := reasoning_text(delta):
                    _add(texts, ThinkingDelta(thinking))
                    self.events += 1
                text = delta.get("content")
                if text and isinstance(text, str):
                    _add(texts, text)
                    self.events += 1
                self._read_calls(delta.get("tool_calls"))
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    def _read_calls(self, deltas: Any) -> None:
        """OpenAI streams a call as its index, id and name first, then its arguments in pieces."""
        for delta in deltas if isinstance(deltas, list) else ():
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", len(self._calls))
            call = self._calls.setdefault(
                index if isinstance(index, int) else 0, {"id": "", "name": "", "arguments": ""}
            )
            function = delta.get("function") if isinstance(delta.get("function"), dict) else {}
            for key, value in (("id", delta.get("id")), ("name", function.get("name"))):
                if isinstance(value, str) and value:
                    call[key] = value
            if isinstance(function.get("arguments"), str):
                call["arguments"] += function["arguments"]
            self.events += 1


def reasoning_text(message: Mapping[str, Any]) -> str:
    """The thinking in a delta or message (its first non-empty reasoning field), else ""."""
    for name in REASONING_FIELDS:
        value = message.get(name)
        if value and isinstance(value, str):
            return value
    return ""


def _add(pieces: list[Piece], piece: Piece) -> None:
    """Append, joining a run of the same kind (a burst of deltas is one update)."""
    last = pieces[-1] if pieces else None
    if isinstance(piece, str) and isinstance(last, str):
        pieces[-1] = last + piece
    elif isinstance(piece, ThinkingDelta) and isinstance(last, ThinkingDelta):
        pieces[-1] = ThinkingDelta(last.text + piece.text)
    else:
        pieces.append(piece)


def sse_batches(response: httpx.Response) -> Iterator[list[ServerSentEvent]]:
    """httpx-sse's own decoders (as in ``EventSource.iter_sse``), grouped by network read."""
    lines, decoder = SSELineDecoder(), SSEDecoder()
    for text in response.iter_text():
        batch = [sse for line in lines.decode(text) if (sse := decoder.decode(line)) is not None]
        if batch:
            yield batch
    tail = [sse for line in lines.flush() if (sse := decoder.decode(line)) is not None]
    if tail:  # as the SSE spec says, an event without its closing blank line is dropped
        yield tail


def is_event_stream(response: httpx.Response) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


def read_limited(response: httpx.Response, limit: int = MAX_ERROR_BODY) -> bytes:
    body = bytearray()
    for part in response.iter_bytes():
        body += part
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def json_object(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def count(value: Any) -> int | None:
    """A token count from a provider's ``usage``: a non-negative integer, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
