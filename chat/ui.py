"""The Gradio app: a streaming ChatInterface with controls beside it, and the public ``/chat`` API.

All the work happens in ``ChatEngine``; this module only converts between Gradio's shapes and
the engine's messages and events, and turns errors into readable messages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import gradio as gr

from chat.engine import ChatEngine
from chat.errors import ChatError, InvalidRequest
from chat.i18n import Lang, detect_language, t
from chat.messages import Done, GenerationParams, Message, Notice, Stats, TextDelta, Waiting, content_text

I18N = gr.I18n(
    en={
        "title": "Chat",
        "controls": "Settings",
        "persona": "Persona",
        "system_prompt": "System prompt",
        "temperature": "Temperature",
        "context_length": "Context length (tokens)",
        "max_new_tokens": "Max new tokens",
        "top_p": "Top-p",
        "stats": "Stats",
        "placeholder": "Ask anything. 用中文或英文提问都可以。",
    },
    zh={
        "title": "聊天",
        "controls": "设置",
        "persona": "角色",
        "system_prompt": "系统提示词",
        "temperature": "温度",
        "context_length": "上下文长度（token）",
        "max_new_tokens": "最大生成长度",
        "top_p": "Top-p",
        "stats": "统计",
        "placeholder": "请输入问题，中文或英文均可。",
    },
)


def history_to_messages(history: Sequence[dict[str, Any]] | None) -> list[Message]:
    """Gradio history (UI dicts with part lists, or API dicts with strings) to engine messages.

    Notice and error bubbles (messages with a metadata title) are display-only and left out.
    """
    messages: list[Message] = []
    for item in history or []:
        if not isinstance(item, dict):
            raise InvalidRequest("history must be a list of {role, content} objects")
        if (item.get("metadata") or {}).get("title"):
            continue
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"history role must be user or assistant, got {role!r}")
        text = content_text(item.get("content"))
        if messages and messages[-1].role == role:  # several bubbles of one turn
            messages[-1] = Message(role, messages[-1].content + "\n\n" + text)
        else:
            messages.append(Message(role, text))
    return messages


def build_params(temperature: Any, context_length: Any, max_new_tokens: Any, top_p: Any) -> GenerationParams:
    return GenerationParams(
        temperature=temperature, context_length=context_length, max_new_tokens=max_new_tokens, top_p=top_p
    )


def build_request(message: Any, history: Any, system_prompt: Any) -> list[Message]:
    if not isinstance(message, str):
        raise InvalidRequest(f"message must be text, got {type(message).__name__}")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidRequest(f"system_prompt must be text, got {type(system_prompt).__name__}")
    if history is not None and not isinstance(history, list):
        raise InvalidRequest("history must be a list of {role, content} objects")
    system = [Message("system", system_prompt)] if system_prompt and system_prompt.strip() else []
    return [*system, *history_to_messages(history), Message("user", message)]


def format_stats(stats: Stats, lang: Lang = "en") -> str:
    """One line under the chat: who answered, how fast, and anything unusual about it."""
    parts = [f"**{stats.backend}** · `{stats.model}`"]
    if stats.from_cache:
        parts.append("from cache")
    else:
        parts.append(f"{stats.completion_tokens} tokens")
        if stats.time_to_first_token is not None:
            parts.append(f"first token {stats.time_to_first_token * 1000:.0f} ms")
        if stats.tokens_per_second:
            parts.append(f"{stats.tokens_per_second:.1f} tok/s")
    if stats.fallback:
        parts.append("fallback")
    if stats.retries:
        parts.append(f"{stats.retries} retr{'y' if stats.retries == 1 else 'ies'}")
    if stats.dropped_messages:
        parts.append(f"{stats.dropped_messages} old messages left out")
    if stats.finish_reason not in ("stop", ""):
        parts.append(f"finish: {stats.finish_reason}")
    return " · ".join(parts)


class ChatHandlers:
    """The two entry points into the engine: the UI's chat and the public ``/chat`` API."""

    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine

    def _events(self, messages: list[Message], params: GenerationParams):  # noqa: ANN202
        cancel = threading.Event()
        events = self.engine.stream(messages, params, cancel=cancel)
        try:
            yield from events
        finally:
            cancel.set()
            events.close()

    def ui(
        self,
        message: str,
        history: list[dict[str, Any]],
        system_prompt: str,
        temperature: float,
        context_length: int,
        max_new_tokens: int,
        top_p: float,
    ) -> Iterator[tuple[list[gr.ChatMessage], str]]:
        """Stream into the chatbot: notices as small titled bubbles, then the reply."""
        lang = detect_language(message if isinstance(message, str) else "")
        notices: list[gr.ChatMessage] = []
        text = ""
        try:
            messages = build_request(message, history, system_prompt)
            params = build_params(temperature, context_length, max_new_tokens, top_p)
            for event in self._events(messages, params):
                match event:
                    case Waiting(position=position):
                        yield [*notices, gr.ChatMessage(t("notice.waiting", lang, position=position))], ""
                    case Notice(text=notice):
                        notices.append(_notice(notice))
                    case TextDelta(text=delta):
                        text += delta
                        yield [*notices, gr.ChatMessage(text)], ""
                    case Done(text=final, stats=stats):
                        yield [*notices, gr.ChatMessage(final)], format_stats(stats, lang)
        except ChatError as exc:
            error = _notice("⚠️ " + exc.user_message(lang))
            yield [*notices, *([gr.ChatMessage(text)] if text else []), error], ""

    def api(
        self,
        message: str,
        history: list[dict[str, Any]] | None = None,
        system_prompt: str = "",
        temperature: float = 0.7,
        context_length: int = 2048,
        max_new_tokens: int = 512,
        top_p: float = 0.95,
    ) -> Iterator[str]:
        """Stream a reply for ``message`` after the optional OpenAI-style ``history``.

        Yields the reply so far (``predict`` returns the final text). Errors arrive as a
        readable message (``gradio_client.exceptions.AppError``).
        """
        lang = detect_language(message if isinstance(message, str) else "")
        text = ""
        try:
            messages = build_request(message, history, system_prompt)
            params = build_params(temperature, context_length, max_new_tokens, top_p)
            for event in self._events(messages, params):
                if isinstance(event, TextDelta):
                    text += event.text
                    yield text
                elif isinstance(event, Done) and event.text != text:
                    yield event.text
        except ChatError as exc:
            raise gr.Error(exc.user_message(lang), print_exception=False) from None


def _notice(text: str) -> gr.ChatMessage:
    return gr.ChatMessage(content="", metadata={"title": text, "status": "done"})


def build_ui(
    engine: ChatEngine,
    *,
    personas: dict[str, str],
    max_context: int,
    default_params: GenerationParams | None = None,
) -> gr.Blocks:
    defaults = default_params or GenerationParams(context_length=min(2048, max_context))
    handlers = ChatHandlers(engine)
    persona_names = list(personas)
    first_prompt = personas[persona_names[0]] if persona_names else ""
    with gr.Blocks(title="Chat", fill_height=True) as demo:
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                persona = gr.Dropdown(
                    persona_names, value=persona_names[0] if persona_names else None, label=I18N("persona")
                )
                system_prompt = gr.Textbox(first_prompt, label=I18N("system_prompt"), lines=4)
                temperature = gr.Slider(
                    0, 2, value=defaults.temperature, step=0.05, label=I18N("temperature")
                )
                context_length = gr.Slider(
                    256, max_context, value=defaults.context_length, step=64, label=I18N("context_length")
                )
                max_new_tokens = gr.Slider(
                    1, 2048, value=defaults.max_new_tokens, step=1, label=I18N("max_new_tokens")
                )
                top_p = gr.Slider(0, 1, value=defaults.top_p, step=0.01, label=I18N("top_p"))
            with gr.Column(scale=3):
                stats = gr.Markdown(render=False, elem_id="stats")
                chatbot = gr.Chatbot(
                    height="70vh",
                    buttons=["copy", "copy_all"],
                    placeholder=I18N("placeholder"),
                    elem_id="chatbot",
                )
                gr.ChatInterface(
                    handlers.ui,
                    chatbot=chatbot,
                    additional_inputs=[system_prompt, temperature, context_length, max_new_tokens, top_p],
                    additional_outputs=[stats],
                    api_name="chat_ui",
                    api_visibility="undocumented",
                    save_history=True,
                    editable=True,
                    concurrency_limit=16,
                    fill_height=True,
                )
                stats.render()
        persona.change(
            lambda name: personas.get(name, ""), persona, system_prompt, queue=False, api_visibility="private"
        )
        gr.api(handlers.api, api_name="chat", concurrency_limit=16)
    return demo
