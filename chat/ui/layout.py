"""The page: a chat-first layout around the chat handlers.

A left sidebar holds the conversation list (kept on the server, chat.ui.sidebar) and the
settings; the chat, with the deployment's title, welcome text, example prompts and footer
(chat.ui.branding), fills the rest. On a phone the sidebar starts closed, so the conversation and
its input fill the first screen; on a desktop it starts open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import gradio as gr

from chat.backends.local.loading import PendingBackend
from chat.engine import ChatEngine
from chat.i18n import request_language, translated
from chat.knowledge import KnowledgeBase
from chat.messages import GenerationParams
from chat.reply.personas import Persona
from chat.reply.pipeline import Pipeline
from chat.reply.transcript import FEEDBACK_LOG_MAX_BYTES, FeedbackLog
from chat.store import Store
from chat.ui.assets import attach_assets
from chat.ui.branding import Branding
from chat.ui.handlers import CHAT_CONCURRENCY, ChatHandlers
from chat.ui.knowledge import knowledge_controls
from chat.ui.labels import I18N
from chat.ui.profile import profile_form
from chat.ui.sidebar import OPEN_SIDEBAR_JS, ConversationList

# Gradio keeps its own copy of every file a handler returns (exports) or a user uploads (imports)
# and never deletes it unless told: every 10 minutes, drop the copies older than an hour.
GRADIO_CACHE_LIFETIME = (600, 3600)
PAGE_CSS = """
.brand { display: flex; align-items: center; gap: .6rem; }
.brand h1 { margin: 0; font-size: 1.25rem; }
.brand-logo { height: 2rem; width: auto; }
#footer { font-size: .8rem; opacity: .75; }
#conversation-list label { width: 100%; }
#conversation-list label span {
    overflow-wrap: anywhere; display: -webkit-box; -webkit-box-orient: vertical;
    -webkit-line-clamp: 2; line-clamp: 2; overflow: hidden;  /* a long title: two lines and … */
}
#chatbot { flex-grow: 1; min-height: 16rem; }
@media (max-width: 640px) { #chatbot { height: calc(100dvh - 13.5rem) !important; } }
"""


def _persona_list(personas: Mapping[str, str] | Sequence[Persona]) -> list[Persona]:
    if isinstance(personas, Mapping):  # {title: prompt}: no language, no examples
        return [Persona(key=title, lang="", title=title, prompt=prompt) for title, prompt in personas.items()]
    return list(personas)


def default_persona(personas: Sequence[Persona], lang: str) -> Persona | None:
    """The first persona's counterpart in the reader's language (a zh browser gets the Chinese
    general assistant), else the first persona in that language, else the first."""
    if not personas:
        return None
    first = personas[0]
    same_key = [p for p in personas if p.key == first.key and p.lang == lang]
    same_lang = [p for p in personas if p.lang == lang]
    return (same_key or same_lang or [first])[0]


def _examples(persona: Persona | None) -> list[dict[str, str]]:
    return [{"text": text} for text in persona.examples] if persona else []


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


def page_options(branding: Branding | None = None) -> dict[str, object]:
    """What ``gr.mount_gradio_app`` (or ``launch``) needs besides the Blocks: theme and CSS."""
    branding = branding or Branding()
    return {"theme": branding.theme(), "css": PAGE_CSS}


def build_ui(
    engine: ChatEngine | Pipeline,
    *,
    personas: Mapping[str, str] | Sequence[Persona],
    max_context: int,
    default_params: GenerationParams | None = None,
    feedback_log: Path | None = None,
    feedback_log_max_bytes: int = FEEDBACK_LOG_MAX_BYTES,
    cache_default: bool = True,
    store: Store | None = None,
    branding: Branding | None = None,
    knowledge: KnowledgeBase | None = None,
) -> gr.Blocks:
    """The page. With ``store`` the conversation list comes from the server; without it (no
    store, ``CHAT_STORE=off``) past chats are kept in the browser only, as Gradio does."""
    defaults = default_params or GenerationParams(context_length=min(2048, max_context))
    branding = branding or Branding()
    feedback = FeedbackLog(feedback_log, max_bytes=feedback_log_max_bytes) if feedback_log else None
    handlers = ChatHandlers(engine, feedback=feedback)
    conversations = ConversationList(store)
    engine = handlers.engine  # the engine under a tracked pipeline
    persona_list = _persona_list(personas)
    by_title = {p.title: p for p in persona_list}
    first = persona_list[0] if persona_list else None
    backend_choices = [(f"{name} · {b.model}", name) for name, b in engine.backends.items()]
    kept = store is not None
    with gr.Blocks(title=branding.page_title, fill_height=True, delete_cache=GRADIO_CACHE_LIFETIME) as demo:
        conversation_id = gr.State(None)
        synced = gr.State(0)  # the page's message count after the last stored turn (chat.ui.sidebar)
        _loading_banner(engine)
        attach_assets(demo)  # names for icon buttons, IME-safe Enter, focus and contrast
        with gr.Sidebar(label=I18N("conversations"), open=False, elem_id="sidebar"):
            listing = conversations.render()
            profile_form(store, engine)  # the owner's profile (chat.ui.profile)
            with gr.Accordion(I18N("controls"), open=True, elem_id="settings"):
                persona = gr.Dropdown(
                    list(by_title), value=first.title if first else None, label=I18N("persona")
                )
                system_prompt = gr.Textbox(
                    first.prompt if first else "", label=I18N("system_prompt"), lines=4
                )
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
                knowledge_panel = knowledge_controls(knowledge, persona_list)  # selector + admin
            with gr.Accordion(I18N("conversation"), open=False):
                export_md = gr.Button(I18N("export_md"), size="sm")
                export_json = gr.Button(I18N("export_json"), size="sm")
                download = gr.File(label=I18N("download"), interactive=False, elem_id="export-file")
                upload = gr.UploadButton(I18N("import_json"), file_types=[".json"], size="sm")
        header = gr.HTML(branding.header("en"), elem_id="brand")
        stats = gr.Markdown(render=False, elem_id="stats")
        chatbot = gr.Chatbot(
            label=I18N("title"),
            show_label=False,
            scale=1,
            buttons=["copy", "copy_all"],
            placeholder=branding.description or I18N("welcome"),
            elem_id="chatbot",
            feedback_options=("Like", "Dislike"),
        )
        chat = gr.ChatInterface(
            conversations.chat(handlers.ui),
            chatbot=chatbot,
            additional_inputs=[
                conversation_id,
                synced,
                system_prompt,
                temperature,
                context_length,
                max_new_tokens,
                top_p,
                backend,
                api_key,
                use_cache,
                knowledge_panel.selector,
            ],
            additional_outputs=[stats, conversation_id, synced, listing],
            api_name="chat_ui",
            api_visibility="undocumented",
            textbox=gr.Textbox(
                label=I18N("message"),
                placeholder=I18N("placeholder"),
                submit_btn=True,
                stop_btn=True,
                elem_id="chat-input",
            ),
            examples=[[e["text"]] for e in _examples(first)] or None,
            cache_examples=False,
            validator=handlers.validate,
            save_history=not kept,
            editable=True,
            concurrency_limit=CHAT_CONCURRENCY,
            fill_height=True,
        )
        stats.render()
        footer = gr.Markdown(branding.footer_text("en"), elem_id="footer")

        def on_load(request: gr.Request) -> tuple[object, ...]:
            lang = request_language(accept_language=request.headers.get("accept-language", ""))
            chosen = default_persona(persona_list, lang)
            return (
                branding.header(lang),
                branding.footer_text(lang),
                chosen.title if chosen else None,
                conversations.refreshed(request, None),  # a store that is away: an empty list
            )

        demo.load(
            on_load,
            None,
            [header, footer, persona, listing],
            js=OPEN_SIDEBAR_JS,
            queue=False,
            show_progress="hidden",  # no spinner over the header and footer on the first screen
            api_visibility="private",
        )
        persona.change(
            lambda name: (
                by_title[name].prompt if name in by_title else "",
                gr.Chatbot(examples=_examples(by_title.get(name)) or None),
            ),
            persona,
            [system_prompt, chatbot],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
        knowledge_panel.wire(demo, persona)
        conversations.wire(chat, conversation_id, synced)
        chatbot.like(handlers.like, [chatbot], None, queue=False, api_visibility="private")
        handlers.attach_stop_mark(demo, chat)
        export_md.click(lambda h: handlers.export(h, "md"), chatbot, download, api_visibility="private")
        export_json.click(lambda h: handlers.export(h, "json"), chatbot, download, api_visibility="private")
        upload.upload(
            handlers.import_conversation,
            upload,
            [chat.chatbot_value, chat.conversation_id],
            api_visibility="private",
        ).then(lambda: (None, 0), None, [conversation_id, synced], queue=False, api_visibility="private")
        gr.api(handlers.api, api_name="chat", concurrency_limit=CHAT_CONCURRENCY)
    return demo
