"""The Gradio app: a streaming ChatInterface with controls beside it, and the public ``/chat`` API.

All the work happens in ``ChatEngine``; this module only converts between Gradio's shapes and
the engine's messages and events, and turns errors into readable messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from cachetools import LRUCache

from chat import transcript
from chat.engine import ChatEngine
from chat.errors import ChatError, InvalidRequest
from chat.i18n import Lang, detect_language, request_language, t, translated
from chat.loading import PendingBackend
from chat.messages import GenerationParams, Message, Notice, Stats, TextDelta, Waiting, content_text
from chat.pipeline import Cancelled, Failure, Pipeline, Refusal, Reply, ReplyRequest
from chat.transcript import FEEDBACK_LOG_MAX_BYTES, ExportFolder, FeedbackLog

log = logging.getLogger(__name__)

# Gradio keeps its own copy of every file a handler returns (exports) or a user uploads (imports)
# and never deletes it unless told: every 10 minutes, drop the copies older than an hour.
GRADIO_CACHE_LIFETIME = (600, 3600)

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
        "backend": "Backend",
        "api_key": "API key (this session only, never stored)",
        "use_cache": "Use the response cache",
        "export_md": "Export Markdown",
        "export_json": "Export JSON",
        "import_json": "Import JSON",
        "download": "Download",
        "conversation": "Conversation",
        "message": "Message",
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
        "backend": "后端",
        "api_key": "API 密钥（仅本次会话使用，不会保存）",
        "use_cache": "使用回复缓存",
        "export_md": "导出 Markdown",
        "export_json": "导出 JSON",
        "import_json": "导入 JSON",
        "download": "下载",
        "conversation": "对话",
        "message": "消息",
        "chat_interface.new_chat": "新对话",
    },
)


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


def format_stats(stats: Stats, lang: Lang = "en") -> str:
    """One line under the chat: who answered, how fast, and anything unusual about it."""
    parts = [f"**{stats.backend}** · `{stats.model}`"]
    if stats.from_cache:
        parts.append(t("stats.from_cache", lang))
    else:
        parts.append(t("stats.tokens", lang, n=stats.completion_tokens))
        if stats.time_to_first_token is not None:
            parts.append(t("stats.first_token", lang, ms=f"{stats.time_to_first_token * 1000:.0f}"))
        if stats.tokens_per_second:
            parts.append(f"{stats.tokens_per_second:.1f} tok/s")
        if stats.cached_prompt_tokens is not None and stats.evaluated_prompt_tokens is not None:
            parts.append(
                t(
                    "stats.prompt_cache",
                    lang,
                    cached=stats.cached_prompt_tokens,
                    evaluated=stats.evaluated_prompt_tokens,
                )
            )
    if stats.fallback:
        parts.append(t("stats.fallback", lang))
    if stats.retries:
        parts.append(t("stats.retries", lang, n=stats.retries))
    if stats.dropped_messages:
        parts.append(t("stats.dropped", lang, n=stats.dropped_messages))
    if stats.finish_reason not in ("stop", ""):
        parts.append(t("stats.finish", lang, reason=stats.finish_reason))
    return " · ".join(parts)


class ChatHandlers:
    """The entry points into the engine from Gradio: the UI's chat and the public ``/chat`` API."""

    def __init__(self, engine: ChatEngine | Pipeline, *, feedback: FeedbackLog | None = None) -> None:
        # The app hands in the service's tracked pipeline (metrics, request log); tests an engine.
        self.pipeline = engine if isinstance(engine, Pipeline) else Pipeline(engine)
        self.engine = self.pipeline.engine
        self.feedback = feedback
        self.exports = ExportFolder()
        # session -> (history length, message) of its last request: the same pair again is a
        # Retry/regenerate, which must not be answered from the cache.
        self._last_request: LRUCache[str, tuple[int, str]] = LRUCache(maxsize=10_000)

    def _is_regenerate(self, request: gr.Request | None, history: Any, message: str) -> bool:
        session = getattr(request, "session_hash", None)
        if not session:
            return False
        key = (len(history or []), message)
        repeated = self._last_request.get(session) == key
        self._last_request[session] = key
        return repeated

    def ui(
        self,
        message: str,
        history: list[dict[str, Any]],
        system_prompt: str,
        temperature: float,
        context_length: int,
        max_new_tokens: int,
        top_p: float,
        backend: str | None = None,
        api_key: str = "",
        use_cache: bool = True,
        request: gr.Request = None,
    ) -> Iterator[tuple[list[gr.ChatMessage], str]]:
        """Stream into the chatbot: notices as small titled bubbles, then the reply."""
        lang = detect_language(message if isinstance(message, str) else "")
        notices: list[gr.ChatMessage] = []
        text = ""
        try:
            messages = build_request(message, history, system_prompt)
            params = build_params(temperature, context_length, max_new_tokens, top_p)
            reply = ReplyRequest(
                messages=messages,
                params=params,
                backend=backend or None,
                api_key=(api_key or "").strip() or None,
                use_cache=bool(use_cache) and not self._is_regenerate(request, history, message),
            )
            for step in self.pipeline.run(reply):
                match step:
                    case Waiting(position=position, status=status):
                        waiting = (
                            t("notice.loading", lang, status=translated(status, lang))
                            if status
                            else t("notice.waiting", lang, position=position)
                        )
                        yield [*notices, _notice(waiting)], ""
                    case Notice(kind="blocked"):
                        pass  # the refusal replaces the whole reply
                    case Notice(text=notice):
                        notices.append(_notice(notice))
                    case TextDelta(text=delta):
                        text += delta
                        yield [*notices, gr.ChatMessage(text)], ""
                    case Refusal(stage="input", text=refusal):
                        yield [*notices, _notice("⚠️ " + refusal)], ""
                    case Failure(error=error):
                        error_bubble = _notice("⚠️ " + _user_message(error, lang))
                        yield [*notices, *([gr.ChatMessage(text)] if text else []), error_bubble], ""
                    case Reply() | Refusal() | Cancelled():
                        yield [*notices, gr.ChatMessage(step.text)], format_stats(step.stats, lang)
        except Exception as exc:  # noqa: BLE001 - the UI seam: every failure becomes a readable bubble
            error = _notice("⚠️ " + _user_message(exc, lang))
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
            for step in self.pipeline.run(ReplyRequest(messages=messages, params=params)):
                match step:
                    case TextDelta():
                        text += step.text
                        yield text
                    case Refusal(stage="input"):
                        raise gr.Error(step.text, print_exception=False)
                    case Failure(error=error):
                        raise gr.Error(_user_message(error, lang), print_exception=False)
                    case Reply() | Refusal() | Cancelled() if step.text != text:
                        yield step.text
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - the API seam: a readable message, never internals
            raise gr.Error(_user_message(exc, lang), print_exception=False) from None

    def validate(self, message: Any) -> dict[str, Any]:
        """Refuse a blocked or over-long message before it enters the chat: it stays in the
        textbox (nothing is lost), the refusal shows beneath it, and it is never saved."""
        text = message if isinstance(message, str) else ""
        try:
            # Local rules and limits only: the engine runs the full check, external moderation
            # included, when the message is sent; doing that here too would call the service twice.
            self.engine.check_input([Message("user", text)], moderate=False)
        except ChatError as exc:
            return gr.validate(False, exc.user_message(detect_language(text)))
        return gr.validate(True, "")

    # -- conversation files and feedback ------------------------------------------------------

    def like(self, history: list[dict[str, Any]], data: gr.LikeData) -> None:
        if self.feedback is None:
            return
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        model = ", ".join(f"{n}:{b.model}" for n, b in self.engine.backends.items())
        self.feedback.record(liked=data.liked, index=int(index), history=history, model=model)

    def export(self, history: list[dict[str, Any]], kind: str) -> str | None:
        return str(self.exports.write(history, kind)) if history else None

    @staticmethod
    def import_conversation(
        path: str | None, request: gr.Request | None = None
    ) -> tuple[list[dict[str, str]], None]:
        """The imported chat, under a new conversation id (it must not overwrite the open saved
        chat). A bad file is explained in the browser's language: no message tells it here."""
        if not path:
            return [], None
        try:
            return transcript.from_json(Path(path).read_bytes()), None
        except ChatError as exc:
            headers = getattr(request, "headers", None) or {}
            lang = request_language(accept_language=headers.get("accept-language", ""))
            raise gr.Error(exc.user_message(lang), print_exception=False) from None


def _loading_banner(engine: ChatEngine) -> None:
    """While a model downloads or loads in the background, show its progress above the page."""
    pending = [b for b in engine.backends.values() if isinstance(b, PendingBackend)]
    if not pending:
        return
    banner = gr.Markdown(elem_id="load-status")
    timer = gr.Timer(1.0)

    def tick(request: gr.Request) -> tuple[gr.Markdown, gr.Timer]:
        lang = request_language(accept_language=request.headers.get("accept-language", ""))
        busy = [b for b in pending if not b.ready and b.error is None]
        failed = [b for b in pending if b.error is not None]
        lines = [f"⏳ **{b.name}**: {translated(b.status, lang)}" for b in busy] + [
            f"⚠️ **{b.name}**: {b.error.user_message(lang)}" for b in failed
        ]
        return gr.Markdown("\n\n".join(lines), visible=bool(lines)), gr.Timer(active=bool(busy))

    timer.tick(tick, None, [banner, timer], queue=False, api_visibility="private")


def _user_message(exc: Exception, lang: Lang) -> str:
    """A ``ChatError``'s own sentence; anything else is a bug: logged in full, shown generically."""
    if isinstance(exc, ChatError):
        return exc.user_message(lang)
    log.exception("unexpected error in a chat request")
    return t("error.internal", lang)


def _notice(text: str) -> gr.ChatMessage:
    return gr.ChatMessage(content="", metadata={"title": text, "status": "done"})


def build_ui(
    engine: ChatEngine | Pipeline,
    *,
    personas: dict[str, str],
    max_context: int,
    default_params: GenerationParams | None = None,
    feedback_log: Path | None = None,
    feedback_log_max_bytes: int = FEEDBACK_LOG_MAX_BYTES,
    cache_default: bool = True,
) -> gr.Blocks:
    defaults = default_params or GenerationParams(context_length=min(2048, max_context))
    feedback = FeedbackLog(feedback_log, max_bytes=feedback_log_max_bytes) if feedback_log else None
    handlers = ChatHandlers(engine, feedback=feedback)
    engine = handlers.engine  # the engine under a tracked pipeline
    persona_names = list(personas)
    first_prompt = personas[persona_names[0]] if persona_names else ""
    backend_choices = [(f"{name} · {b.model}", name) for name, b in engine.backends.items()]
    with gr.Blocks(title="Chat", fill_height=True, delete_cache=GRADIO_CACHE_LIFETIME) as demo:
        _loading_banner(engine)
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
                backend = gr.Dropdown(
                    backend_choices,
                    value=engine.default_backend,
                    label=I18N("backend"),
                    visible=len(backend_choices) > 1,
                )
                api_key = gr.Textbox(
                    "",
                    type="password",
                    label=I18N("api_key"),
                    visible=any(b.accepts_api_key for b in engine.backends.values()),
                    elem_id="api-key",
                )
                use_cache = gr.Checkbox(
                    cache_default, label=I18N("use_cache"), visible=engine.cache is not None
                )
                with gr.Accordion(I18N("conversation"), open=False):
                    export_md = gr.Button(I18N("export_md"), size="sm")
                    export_json = gr.Button(I18N("export_json"), size="sm")
                    download = gr.File(label=I18N("download"), interactive=False, elem_id="export-file")
                    upload = gr.UploadButton(I18N("import_json"), file_types=[".json"], size="sm")
            with gr.Column(scale=3):
                stats = gr.Markdown(render=False, elem_id="stats")
                chatbot = gr.Chatbot(
                    label=I18N("title"),
                    height="70vh",
                    buttons=["copy", "copy_all"],
                    placeholder=I18N("placeholder"),
                    elem_id="chatbot",
                    feedback_options=("Like", "Dislike"),
                )
                chat = gr.ChatInterface(
                    handlers.ui,
                    chatbot=chatbot,
                    additional_inputs=[
                        system_prompt,
                        temperature,
                        context_length,
                        max_new_tokens,
                        top_p,
                        backend,
                        api_key,
                        use_cache,
                    ],
                    additional_outputs=[stats],
                    api_name="chat_ui",
                    api_visibility="undocumented",
                    textbox=gr.Textbox(
                        label=I18N("message"),
                        placeholder=I18N("placeholder"),
                        submit_btn=True,
                        stop_btn=True,
                        elem_id="chat-input",
                    ),
                    validator=handlers.validate,
                    save_history=True,
                    editable=True,
                    concurrency_limit=16,
                    fill_height=True,
                )
                stats.render()
        persona.change(
            lambda name: personas.get(name, ""), persona, system_prompt, queue=False, api_visibility="private"
        )
        chatbot.like(handlers.like, [chatbot], None, queue=False, api_visibility="private")
        export_md.click(lambda h: handlers.export(h, "md"), chatbot, download, api_visibility="private")
        export_json.click(lambda h: handlers.export(h, "json"), chatbot, download, api_visibility="private")
        upload.upload(
            handlers.import_conversation,
            upload,
            [chat.chatbot_value, chat.conversation_id],
            api_visibility="private",
        )
        gr.api(handlers.api, api_name="chat", concurrency_limit=16)
    return demo
