"""Tool calls for a model without a tool API (llama.cpp in-process), through its chat template.

The offered tools go into the system prompt in the Hermes / Qwen 2.5 form (a ``<tools>`` block and
how to answer with ``<tool_call>`` JSON); earlier calls and their results are rendered as that
form's text, and the reply is read back. ``auto``: ``<tool_call>`` blocks (Qwen, Hermes and other
ChatML models) and Llama 3's ``<|python_tag|>`` or bare ``{"name", "parameters"}`` object become
calls; text that is not a call stays text, and nothing that may start a call is shown before it is
known. A named or ``required`` choice holds sampling to the call's JSON schema with a grammar, by
the ``response_format`` the local backend already honours: the backend itself is not changed.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from chat.backends.base import Backend, Chunk, Finish
from chat.backends.tool_offer import ToolOffer
from chat.messages import GenerationParams, Message, ToolCall, Waiting

MARKERS = ("<tool_call>", "<|python_tag|>")
TOOLS_NOTE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
_DECODER = json.JSONDecoder()


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# -- the prompt ------------------------------------------------------------------------------------


def render(messages: Sequence[Message], offer: ToolOffer | None) -> list[Message]:
    """``messages`` as plain text turns: the tools note in the system prompt (unless the choice
    is ``none``), calls as ``<tool_call>`` text, results as a user turn of ``<tool_response>``s."""
    out: list[Message] = []
    for message in messages:
        if message.role == "tool" and out and out[-1].content.startswith("<tool_response>"):
            out[-1] = Message("user", out[-1].content + "\n" + _response(message))
        else:
            out.append(render_one(message))
    if offer is None or offer.choice == "none":
        return out
    note = TOOLS_NOTE.format(
        tools="\n".join(json.dumps({"type": "function", "function": f}) for f in offer.functions)
    )
    if out and out[0].role == "system":
        return [Message("system", f"{out[0].content}\n\n{note}"), *out[1:]]
    return [Message("system", note), *out]


def render_one(message: Message) -> Message:
    """One message as the template's plain roles see it."""
    if message.role == "tool":
        return Message("user", _response(message))
    if message.tool_calls:
        calls = "\n".join(f"<tool_call>\n{_call_json(call)}\n</tool_call>" for call in message.tool_calls)
        return Message("assistant", f"{message.content}\n{calls}".strip())
    return message


def _response(message: Message) -> str:
    return f"<tool_response>\n{message.content}\n</tool_response>"


def _call_json(call: ToolCall) -> str:
    try:
        arguments: Any = json.loads(call.arguments or "{}")
    except ValueError:
        arguments = call.arguments
    return json.dumps({"name": call.name, "arguments": arguments}, ensure_ascii=False)


def forced_format(offer: ToolOffer) -> str | None:
    """A canonical ``response_format`` holding the reply to one call of the named function (or of
    any offered function for ``required``); None when the model may answer in text."""
    if offer.named:
        targets = [offer.function(offer.named)]
    elif offer.choice == "required":
        targets = list(offer.functions)
    else:
        return None
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
            "required": ["name", "arguments"],
        }
        for f in targets
        if f is not None
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    value = {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema, "strict": True}}
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# -- the reply -------------------------------------------------------------------------------------


def parse_calls(text: str) -> tuple[list[ToolCall], str]:
    """The calls in ``text`` and the text that is not a call. Accepts ``<tool_call>`` blocks,
    ``<|python_tag|>`` and a reply that is one bare JSON object with a ``name``."""
    calls: list[ToolCall] = []
    rest: list[str] = []
    at = 0
    stripped = text.lstrip()
    if stripped.startswith("{"):
        call, end = _decode_call(text, len(text) - len(stripped))
        if call is not None:
            calls.append(call)
            at = end
    while True:
        positions = [(text.find(marker, at), marker) for marker in MARKERS]
        found = [(p, m) for p, m in positions if p >= 0]
        if not found:
            rest.append(text[at:])
            break
        position, marker = min(found)
        start = position + len(marker)
        brace = text.find("{", start)
        call, end = _decode_call(text, brace) if brace >= 0 and not text[start:brace].strip() else (None, 0)
        if call is None:
            rest.append(text[at:])
            break
        rest.append(text[at:position])
        calls.append(call)
        at = end
        closing = text[at:].lstrip()
        if closing.startswith("</tool_call>"):
            at = len(text) - len(closing) + len("</tool_call>")
    return calls, "".join(rest).strip() if calls else text


def _decode_call(text: str, start: int) -> tuple[ToolCall | None, int]:
    try:
        value, end = _DECODER.raw_decode(text, start)
    except ValueError:
        return None, 0
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None, 0
    arguments = value.get("arguments", value.get("parameters", {}))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(new_call_id(), value["name"], arguments), end


class CallReader:
    """Streams reply text, holding back whatever may be the start of a call until it is known."""

    def __init__(self) -> None:
        self.text = ""
        self.released = 0
        self.holding = False  # a call began: everything from here is read at the end

    def feed(self, delta: str) -> str:
        self.text += delta
        if self.holding:
            return ""
        if not self.text[: self.released].strip() and self.text.lstrip().startswith("{"):
            self.holding = True  # a reply that opens with JSON: Llama 3's bare call
            return ""
        pending = self.text[self.released :]
        starts = [p for p in (pending.find(m) for m in MARKERS) if p >= 0]
        if starts:
            self.holding = True
            return self._release(self.released + min(starts))
        if not self.text.strip():
            return ""  # only blank so far: a bare call may still follow
        keep = max((n for m in MARKERS for n in range(1, len(m)) if pending.endswith(m[:n])), default=0)
        return self._release(len(self.text) - keep)

    def finish(self) -> tuple[list[ToolCall], str]:
        """The calls found, and the text not yet released that is not a call."""
        held = self.text[self.released :]
        calls, rest = parse_calls(held)
        return calls, rest if calls else held

    def _release(self, upto: int) -> str:
        out, self.released = self.text[self.released : upto], upto
        return out


# -- the backend, as a model with tools sees it ----------------------------------------------------


class TextToolsBackend(Backend):
    """``inner`` answering a conversation with tools: prompts rendered as text, replies read back.

    Made per request by ``for_tools``; everything else (queue, readiness, limits) is ``inner``'s.
    """

    def __init__(self, inner: Backend, offer: ToolOffer | None) -> None:
        self.inner = inner
        self.offer = offer
        self.name = inner.name
        self.model = inner.model
        self.exact_token_count = inner.exact_token_count
        self.accepts_time_left = inner.accepts_time_left
        self.accepts_api_key = inner.accepts_api_key
        self.response_formats = inner.response_formats
        self.base_url = inner.base_url

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.inner.count_tokens(render(messages, self.offer))

    def message_tokens(self, message: Message) -> int:
        return self.inner.message_tokens(render_one(message))

    def context_window(self) -> int | None:
        return self.inner.context_window()

    def prepare(self, cancel: threading.Event | None = None) -> Iterator[Waiting]:
        return self.inner.prepare(cancel)

    def stream(self, messages: Sequence[Message], params: GenerationParams, **kwargs: Any) -> Iterator[Chunk]:
        offer = self.offer
        forced = forced_format(offer) if offer is not None else None
        inner_params = replace(params, tools=None, response_format=forced or params.response_format)
        chunks = self.inner.stream(render(messages, offer), inner_params, **kwargs)
        try:
            if offer is None or offer.choice == "none":
                yield from chunks
            elif forced is not None:
                yield from _forced(chunks)
            else:
                yield from _sniffed(chunks)
        finally:
            chunks.close()


def _forced(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """A grammar-held reply: one JSON call, given as a call (its text only if it is not one)."""
    text: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, str):
            text.append(chunk)
        elif isinstance(chunk, Finish):
            whole = "".join(text)
            call, _ = _decode_call(whole, whole.find("{")) if "{" in whole else (None, 0)
            if call is None:
                yield whole
                yield chunk
            else:
                yield call
                yield replace(chunk, reason="tool_calls") if chunk.reason == "stop" else chunk
        else:
            yield chunk


def _sniffed(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    reader = CallReader()
    for chunk in chunks:
        if isinstance(chunk, str):
            if shown := reader.feed(chunk):
                yield shown
        elif isinstance(chunk, Finish):
            calls, rest = reader.finish()
            if rest:
                yield rest
            yield from calls
            yield replace(chunk, reason="tool_calls") if calls and chunk.reason == "stop" else chunk
        else:
            yield chunk


def for_tools(backend: Backend, params: GenerationParams, messages: Sequence[Message]) -> Backend:
    """The backend to answer ``messages`` with: ``backend`` itself when it takes tools natively or
    none are in play, else a ``TextToolsBackend`` over it."""
    if backend.native_tools:
        return backend
    in_play = params.tools is not None or any(m.role == "tool" or m.tool_calls for m in messages)
    return TextToolsBackend(backend, ToolOffer.load(params.tools)) if in_play else backend
