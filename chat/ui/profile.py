"""The page's profile form: the same profile as ``GET/PUT /api/me/profile`` (chat.reply.profiles), for the
owner the door decided for the page (chat.ui.sidebar.page_owner). It loads when opened and saves
with one button; its text passes the input guard like a message. Only with a store."""

from __future__ import annotations

import gradio as gr

from chat.engine import ChatEngine
from chat.errors import ChatError
from chat.i18n import Lang, request_language, t
from chat.reply.profiles import LANGUAGES, check_profile, checked_profile, personas, profile_dict
from chat.store import Store
from chat.ui.labels import I18N
from chat.ui.sidebar import page_owner

LANGUAGE_NAMES = {"": "—", "en": "English", "zh": "中文"}
Fields = tuple[str, str, str, str, bool]


def _lang(request: gr.Request | None) -> Lang:
    headers = getattr(request, "headers", None) or {}
    return request_language(accept_language=headers.get("accept-language", ""))


class ProfileForm:
    """Load and save the page owner's profile."""

    def __init__(self, store: Store, engine: ChatEngine) -> None:
        self.store = store
        self.engine = engine

    def load(self, request: gr.Request) -> Fields:
        owner = page_owner(request)
        try:
            found = self.store.get_profile(owner) if owner else None
        except ChatError as exc:
            raise gr.Error(exc.user_message(_lang(request)), print_exception=False) from None
        data = profile_dict(found)
        return (data["display_name"], data["language"], data["persona"], data["notes"], data["use_in_prompt"])

    def save(self, name: str, language: str, persona: str, notes: str, use: bool, request: gr.Request) -> str:
        """Check and keep the profile; the answer is a short line for the form."""
        lang = _lang(request)
        owner = page_owner(request)
        if owner is None:
            return ""
        try:
            profile = checked_profile(
                display_name=name or "",
                language=language or "",
                persona=persona or "",
                notes=notes or "",
                use_in_prompt=bool(use),
            )
            check_profile(self.engine, profile)
            self.store.save_profile(owner, profile)
        except ChatError as exc:  # a field out of bounds, refused text, a failing database
            return exc.user_message(lang)
        return t("profile.saved", lang)


def profile_form(store: Store | None, engine: ChatEngine) -> None:
    """The profile accordion, inside the current Blocks layout (nothing without a store)."""
    if store is None:
        return
    form = ProfileForm(store, engine)
    with gr.Accordion(I18N("profile"), open=False, elem_id="profile") as accordion:
        name = gr.Textbox(label=I18N("profile_name"), max_lines=1, elem_id="profile-name")
        language = gr.Dropdown(
            [(LANGUAGE_NAMES[code], code) for code in LANGUAGES], value="", label=I18N("profile_language")
        )
        persona = gr.Dropdown(
            [(key or "—", key) for key in personas()], value="", label=I18N("profile_persona")
        )
        notes = gr.Textbox(label=I18N("profile_notes"), lines=3, elem_id="profile-notes")
        use = gr.Checkbox(False, label=I18N("profile_use"), elem_id="profile-use")
        save = gr.Button(I18N("profile_save"), size="sm", elem_id="profile-save")
        status = gr.Markdown(elem_id="profile-status")
    fields = [name, language, persona, notes, use]
    accordion.expand(form.load, None, fields, api_name=False, queue=False)
    save.click(form.save, fields, [status], api_name=False)
