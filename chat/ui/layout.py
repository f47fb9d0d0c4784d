"""The page: a chat-first layout around the chat handlers.

A left sidebar holds the conversation list (kept on the server, chat.ui.sidebar) and the
settings (chat.ui.settings_panel); the chat, with the deployment's title, welcome text, example
prompts and footer (chat.ui.branding), fills the rest. On a phone the sidebar starts closed, so the
conversation and its input fill the first screen; on a desktop it starts open. A reload brings back
the open conversation and the settings (chat.ui.page_state).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from chat.ui.continue_reply import ContinueButton
from chat.ui.handlers import CHAT_CONCURRENCY, ChatHandlers
from chat.ui.labels import I18N
from chat.ui.model_hint import ModelHint
from chat.ui.page_state import READ_JS, PageState, conversation_of, open_of, parsed, settings_of
from chat.ui.profile import profile_form
from chat.ui.settings_panel import SettingsPanel, default_persona, examples, persona_list, settings_panel
from chat.ui.sidebar import OPEN_SIDEBAR_JS, ConversationList
from chat.ui.voice import attach_voice
from chat.voice import Voice

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
@media (max-width: 640px) { #chatbot { height: calc(100dvh - 15rem) !important; } }
"""
MESSAGE_MAX_LINES = 8  # a long paste scrolls inside the message box instead of pushing the chat away

__all__ = ["GRADIO_CACHE_LIFETIME", "build_ui", "default_persona", "page_options"]


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


@dataclass
class Page:
    """The page's parts that its load event and its wiring reach."""

    branding: Branding
    handlers: ChatHandlers
    conversations: ConversationList
    panel: SettingsPanel
    state: PageState
    hint: ModelHint
    chat: gr.ChatInterface
    header: gr.HTML
    footer: gr.Markdown
    stats: gr.Markdown
    conversation_id: gr.State
    synced: gr.State

    def load_outputs(self) -> list[Any]:
        opened = [self.conversation_id, self.synced, self.chat.chatbot_value, self.conversations.new_title]
        return [
            self.header,
            self.footer,
            self.hint.text,
            self.hint.close,
            *self.panel.saved_fields,
            self.chat.chatbot,
            self.chat.chatbot_state,  # ChatInterface's history: the next turn's context
            *opened,
            self.conversations.listing,
        ]

    def loaded(self, saved: Any, request: gr.Request) -> tuple[Any, ...]:
        """The page in the reader's language, as the browser last left it: the settings, and the
        conversation that was open (when it is still there)."""
        lang = request_language(accept_language=request.headers.get("accept-language", ""))
        saved = parsed(saved)
        settings = self.panel.restored(settings_of(saved), lang)
        persona = self.panel.by_title.get(settings[0] or "")
        cid, count, shown, title, rated, _ = self.conversations.open_page(open_of(saved), request)
        # straight into the chatbot: a load event without the queue does not pass a State's change on
        chatbot = gr.Chatbot(examples=examples(persona) or None, feedback_value=rated.feedback_value)
        if cid:
            chatbot = gr.Chatbot(
                value=shown, examples=examples(persona) or None, feedback_value=rated.feedback_value
            )
        return (
            self.branding.header(lang),
            self.branding.footer_text(lang),
            *self.hint.shown(lang, saved),
            *settings,
            chatbot,
            shown if cid else gr.skip(),
            cid,
            count,
            shown if cid else gr.skip(),
            title,
            self.conversations.refreshed(request, cid),  # a store that is away: the list as it was
        )

    def restore_conversation(self, saved: Any, conversation_id: str | None) -> tuple[Any, Any, Any]:
        """A conversation opened again answers with the persona and knowledge base it had."""
        return self.panel.of_conversation(conversation_of(parsed(saved), conversation_id))

    def wire(self, demo: gr.Blocks) -> None:
        panel, chat = self.panel, self.chat
        demo.load(
            self.loaded,
            self.state.carrier,
            self.load_outputs(),
            js=f"(...values) => {{ ({OPEN_SIDEBAR_JS})(); return ({READ_JS})(...values); }}",
            queue=False,
            show_progress="hidden",  # no spinner over the header and footer on the first screen
            api_visibility="private",
        )
        panel.wire(chat.chatbot)
        panel.knowledge.wire(demo, panel.persona)
        self.conversations.wire(chat, self.conversation_id, self.synced, self.stats)
        restored = [panel.persona, panel.system_prompt, panel.knowledge.selector]
        for opening in (self.conversations.opening, self.conversations.undoing):
            opening.then(
                self.restore_conversation,
                [self.state.carrier, self.conversation_id],
                restored,
                js=READ_JS,
                queue=False,
                show_progress="hidden",
                api_visibility="private",
            )
        self.state.wire(self.conversations.listing, self.chat.textbox)
        self.hint.wire()
        chat.chatbot.like(self.handlers.like, [chat.chatbot], None, queue=False, api_visibility="private")
        self.handlers.attach_stop_mark(demo, chat)
        keep_placeholder(demo, chat)


@dataclass
class FilesPanel:
    """The sidebar's accordion to export the chat as Markdown or JSON and import a JSON file."""

    export_md: gr.Button
    export_json: gr.Button
    download: gr.File
    upload: gr.UploadButton

    @classmethod
    def render(cls) -> FilesPanel:
        with gr.Accordion(I18N("conversation"), open=False):
            return cls(
                gr.Button(I18N("export_md"), size="sm"),
                gr.Button(I18N("export_json"), size="sm"),
                gr.File(label=I18N("download"), interactive=False, elem_id="export-file"),
                gr.UploadButton(I18N("import_json"), file_types=[".json"], size="sm"),
            )

    def wire(self, page: Page) -> None:
        handlers, conversations, chatbot = page.handlers, page.conversations, page.chat.chatbot
        private: dict[str, Any] = {"api_visibility": "private"}
        self.export_md.click(lambda h: handlers.export(h, "md"), chatbot, self.download, **private)
        self.export_json.click(lambda h: handlers.export(h, "json"), chatbot, self.download, **private)
        opened = [page.conversation_id, page.synced, page.chat.chatbot_value, conversations.new_title]
        # ChatInterface's own id too: without a store, the browser keeps the import as a new chat
        outputs = [*opened, conversations.listing, page.chat.conversation_id]
        self.upload.upload(conversations.imported, self.upload, outputs, **private)


def keep_placeholder(demo: gr.Blocks, chat: gr.ChatInterface) -> None:
    """ChatInterface blanks the message box's placeholder when a message is sent or retried and
    never puts it back; its two handlers that do so leave the placeholder alone instead."""
    textbox = type(chat.textbox)
    for block_fn in demo.fns.values():
        if block_fn.fn == chat._clear_and_save_textbox:  # noqa: SLF001 - no hook for it
            block_fn.fn = lambda message: (textbox("", interactive=False), message)
        elif (
            block_fn.outputs == [chat.textbox]
            and getattr(block_fn.fn, "__name__", "") == "<lambda>"
            and not inspect.iscoroutinefunction(block_fn.fn)
        ):
            try:
                blanks = block_fn.fn().get("placeholder") == ""  # Retry's update(placeholder="")
            except (TypeError, AttributeError):
                blanks = False
            if blanks:
                block_fn.fn = lambda: gr.update(interactive=False)


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
    voice: Voice | None = None,
) -> gr.Blocks:
    """The page. With ``store`` the conversation list comes from the server; without it (no
    store, ``CHAT_STORE=off``) past chats are kept in the browser only, as Gradio does."""
    defaults = default_params or GenerationParams.within(max_context)
    branding = branding or Branding()
    feedback = FeedbackLog(feedback_log, max_bytes=feedback_log_max_bytes) if feedback_log else None
    handlers = ChatHandlers(engine, feedback=feedback)
    conversations = ConversationList(store)
    engine = handlers.engine  # the engine under a tracked pipeline
    with gr.Blocks(title=branding.page_title, fill_height=True, delete_cache=GRADIO_CACHE_LIFETIME) as demo:
        _loading_banner(engine)
        attach_assets(demo)  # names for icon buttons, IME-safe Enter, focus and contrast
        attach_voice(demo, voice)  # microphone in the message box, speaker per reply
        with gr.Sidebar(label=I18N("conversations"), open=False, elem_id="sidebar"):
            conversations.render()
            profile_form(store, engine)  # the owner's profile (chat.ui.profile)
            with gr.Accordion(I18N("controls"), open=True, elem_id="settings"):
                panel = settings_panel(
                    engine,
                    persona_list(personas),
                    max_context=max_context,
                    defaults=defaults,
                    cache_default=cache_default,
                    knowledge=knowledge,
                )
            files = FilesPanel.render()
        page = chat_page(handlers, conversations, panel, branding, kept=store is not None)
        page.wire(demo)
        files.wire(page)
        gr.api(handlers.api, api_name="chat", concurrency_limit=CHAT_CONCURRENCY)
    return demo


def chat_page(
    handlers: ChatHandlers,
    conversations: ConversationList,
    panel: SettingsPanel,
    branding: Branding,
    *,
    kept: bool,
) -> Page:
    """The chat column: the header, the first-visit hint, the chat with its message box, the
    stats line and the footer. ``kept``: conversations are stored on the server."""
    conversation_id = gr.State(None)
    synced = gr.State(0)  # the page's message count after the last stored turn (chat.ui.sidebar)
    state = PageState.render(panel.saved_fields)
    header = gr.HTML(branding.header("en"), elem_id="brand")
    hint = ModelHint(handlers.engine)
    stats = gr.Markdown(render=False, elem_id="stats")
    first = panel.personas[0] if panel.personas else None
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
        additional_inputs=[conversation_id, synced, *panel.chat_inputs],
        additional_outputs=[stats, conversation_id, synced, conversations.listing],
        api_name="chat_ui",
        api_visibility="undocumented",
        textbox=gr.Textbox(
            label=I18N("message"),
            placeholder=I18N("placeholder"),
            submit_btn=True,
            stop_btn=True,
            max_lines=MESSAGE_MAX_LINES,
            elem_id="chat-input",
        ),
        examples=[[e["text"]] for e in examples(first)] or None,
        cache_examples=False,
        validator=handlers.validate,
        save_history=not kept,
        editable=True,
        concurrency_limit=CHAT_CONCURRENCY,
        fill_height=True,
    )
    stats.render()
    ContinueButton().wire(stats)  # under a reply cut at the length limit
    footer = gr.Markdown(branding.footer_text("en"), elem_id="footer")
    return Page(
        branding,
        handlers,
        conversations,
        panel,
        state,
        hint,
        chat,
        header,
        footer,
        stats,
        conversation_id,
        synced,
    )
