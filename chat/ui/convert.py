"""Gradio's shapes to the reply pipeline's: the chat history, the settings, the request.

Both ways into the model from Gradio (the page's chat and the public ``/chat`` API) check what
they were sent here, so a malformed call gets the same readable message from either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chat.errors import InvalidRequest
from chat.messages import GenerationParams, Message, content_text


def history_to_messages(history: Sequence[dict[str, Any]] | None) -> list[Message]:
    """Gradio history (UI dicts with part lists, or API dicts with strings) to engine messages.

    Notice and error bubbles (messages with a metadata title) are display-only and left out,
    and so is a user message that got no reply (refused, failed or stopped while waiting): it
    stays on screen, but it is not context for the model, nor checked again by the guards.
    """
    messages: list[Message] = []
    for item in history or []:
        if not isinstance(item, dict):
            raise InvalidRequest(reason="invalid.history")
        if (item.get("metadata") or {}).get("title"):
            continue
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(reason="invalid.history_role", role=repr(role))
        text = content_text(item.get("content"))
        if messages and messages[-1].role == role == "assistant":  # several bubbles of one reply
            messages[-1] = Message(role, messages[-1].content + "\n\n" + text)
        elif messages and messages[-1].role == role == "user":  # the earlier one went unanswered
            messages[-1] = Message(role, text)
        else:
            messages.append(Message(role, text))
    if messages and messages[-1].role == "user":
        messages.pop()
    return messages


def build_params(temperature: Any, context_length: Any, max_new_tokens: Any, top_p: Any) -> GenerationParams:
    return GenerationParams(
        temperature=temperature, context_length=context_length, max_new_tokens=max_new_tokens, top_p=top_p
    )


def build_request(message: Any, history: Any, system_prompt: Any) -> list[Message]:
    if not isinstance(message, str):
        raise InvalidRequest(reason="invalid.not_text", field="message", kind=type(message).__name__)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidRequest(
            reason="invalid.not_text", field="system_prompt", kind=type(system_prompt).__name__
        )
    if history is not None and not isinstance(history, list):
        raise InvalidRequest(reason="invalid.history")
    system = [Message("system", system_prompt)] if system_prompt and system_prompt.strip() else []
    return [*system, *history_to_messages(history), Message("user", message)]


def knowledge_name(value: Any) -> str | None:
    """``/chat``'s ``knowledge``: a name, or nothing (empty or missing: no knowledge base)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(reason="invalid.not_text", field="knowledge", kind=type(value).__name__)
    return value.strip() or None
