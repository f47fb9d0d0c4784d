"""The page: Gradio Blocks around the chat handlers."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from chat.engine import ChatEngine
from chat.i18n import request_language, translated
from chat.loading import PendingBackend
from chat.messages import GenerationParams
from chat.pipeline import Pipeline
from chat.transcript import FEEDBACK_LOG_MAX_BYTES, FeedbackLog
from chat.ui.handlers import ChatHandlers
from chat.ui.labels import I18N

# Gradio keeps its own copy of every file a handler returns (exports) or a user uploads (imports)
# and never deletes it unless told: every 10 minutes, drop the copies older than an hour.
GRADIO_CACHE_LIFETIME = (600, 3600)


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
