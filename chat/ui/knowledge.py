"""The page's knowledge bases: the selector a reply answers from, the operator's admin panel
(upload, list, delete) and the sources block under a reply.

``knowledge_controls(library, personas)`` renders the selector and the admin accordion where it
is called; the layout passes ``controls.selector`` to the chat as an additional input and calls
``controls.wire(demo, persona)`` once the page's components exist. The admin panel shows only to
the operator (as the door counts them: behind a login, or on the server itself); its handlers
check again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from chat.errors import ChatError
from chat.i18n import Lang, request_language, t
from chat.knowledge.records import Source
from chat.reply.personas import Persona
from chat.service.door.identity import OPERATOR_KEY, is_operator
from chat.ui.labels import I18N

if TYPE_CHECKING:
    from chat.knowledge import KnowledgeBase

log = logging.getLogger(__name__)

SOURCES_ID = "sources"  # the sources bubble's metadata id: display-only, like every titled bubble
SNIPPET_CHARS = 240  # of each source's text shown under a reply
OPERATOR_JS = "(operator) => { document.body.classList.toggle('chat-operator', operator === true); }"
UPLOAD_TYPES = [".md", ".txt", ".pdf", ".docx", ".html", ".htm", ".csv"]


def sources_bubble(sources: Sequence[Source], lang: Lang) -> list[gr.ChatMessage]:
    """The sources a reply was given, as a collapsed titled bubble under it ("Sources (2)" /
    "来源（2）"): document, heading and a snippet each, best first; none without sources. Titled,
    so ``history_to_messages`` never sends it back to the model."""
    if not sources:
        return []
    lines = []
    for number, source in enumerate(sources, 1):
        where = f"**{source.document}**" + (f" › {source.heading}" if source.heading else "")
        snippet = " ".join(source.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS].rstrip() + "…"
        lines.append(f"{number}. {where}\n\n   > {snippet}")
    metadata = {"title": t("knowledge.sources", lang, count=len(sources)), "status": "done", "id": SOURCES_ID}
    return [gr.ChatMessage(content="\n\n".join(lines), metadata=metadata)]


def stored_sources_bubble(stored: Sequence[Mapping[str, Any]], lang: Lang) -> list[gr.ChatMessage]:
    """``sources_bubble`` for a reply reopened from the store, which keeps its sources as
    ``Source.to_dict`` gave them; an entry that is not such a dict is left out."""
    sources = [
        Source(
            document=str(item.get("document", "")),
            heading=str(item.get("heading", "")),
            text=str(item.get("text", "")),
            score=score if isinstance(score := item.get("score"), int | float) else 0.0,
            document_id=str(item.get("document_id", "")),
        )
        for item in stored
        if isinstance(item, Mapping)
    ]
    return sources_bubble(sources, lang)


def persona_knowledge(persona: Persona | None, names: Sequence[str]) -> str | None:
    """The knowledge base a persona answers from, when it exists (else none: a missing one would
    fail every message)."""
    return persona.knowledge if persona and persona.knowledge in names else None


@dataclass
class KnowledgeControls:
    """The page's knowledge components; ``selector`` is the chat's additional input."""

    library: KnowledgeBase | None
    personas: dict[str, Persona]
    selector: gr.Dropdown
    hint: gr.Markdown  # under the selector: the knowledge bases no persona uses
    operator: gr.Checkbox  # hidden: whether the page's reader is the operator (page.css shows the panel)
    target: gr.Dropdown  # the knowledge base the admin panel works on (a new name may be typed)
    files: gr.File
    upload: gr.Button
    documents: gr.Markdown
    document: gr.Dropdown
    delete: gr.Button
    status: gr.Markdown

    def names(self) -> list[str]:
        return _names(self.library)

    def for_persona(self, title: str | None, knowledge: str | None = None) -> gr.Dropdown:
        """The selector on ``knowledge`` when it still exists ("": none), else on the persona's own."""
        names = self.names()
        chosen = knowledge in names or knowledge == ""
        value = knowledge if chosen else persona_knowledge(self.personas.get(title or ""), names)
        return gr.Dropdown(choices=_choices(names), value=value or "")

    def unused(self, lang: Lang, names: Sequence[str] | None = None) -> gr.Markdown:
        """A hint under the selector naming the knowledge bases no persona answers from (a new
        one is used only once chosen here)."""
        used = {p.knowledge for p in self.personas.values()}
        unused = [name for name in (self.names() if names is None else names) if name not in used]
        text = t(
            "page.knowledge_unused", lang, names="、".join(unused) if lang == "zh" else ", ".join(unused)
        )
        return gr.Markdown("ℹ️ " + text if unused else "", visible=bool(unused))

    def listed(self, knowledge: str | None, request: gr.Request | None) -> tuple[Any, ...]:
        """The admin panel's list of ``knowledge``'s documents, and the choices around it."""
        names = self.names()
        lang = _lang(request)
        try:
            docs = self.library.list_documents(knowledge) if self.library and knowledge in names else []
        except ChatError as exc:  # the database is away: say so where the list would be
            return (
                gr.Markdown("⚠️ " + exc.user_message(lang)),
                gr.Dropdown(choices=[]),
                gr.Dropdown(choices=names),
            )
        table = (
            "\n".join(
                [
                    f"| {t('knowledge.col_document', lang)} | {t('knowledge.col_chunks', lang)} |",
                    "|---|---|",
                    *(f"| {d.name.replace('|', '∣')} | {d.chunks} |" for d in docs),
                ]
            )
            if docs
            else t("knowledge.no_documents", lang)
        )
        return (
            gr.Markdown(table),
            gr.Dropdown(choices=[(d.name, d.id) for d in docs], value=None),
            gr.Dropdown(choices=names),
        )

    def add(
        self, knowledge: str | None, paths: list[str] | None, selected: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        """Upload the chosen files into ``knowledge``; each file is indexed whole or not at all."""
        lang = _lang(request)
        if not _operator(request):
            return self._after("⚠️ " + t("knowledge.operator_only", lang), knowledge, selected, request)
        lines: list[str] = []
        name = (knowledge or "").strip()
        if self.library is None or not paths or not name:
            lines.append("⚠️ " + t("knowledge.upload_missing", lang))
        for path in (paths or []) if self.library and name else []:
            filename = Path(path).name
            try:
                info = self.library.add_document(name, filename, Path(path).read_bytes())
                lines.append("✅ " + t("knowledge.uploaded", lang, name=info.name, chunks=info.chunks))
            except (ChatError, OSError) as exc:
                message = exc.user_message(lang) if isinstance(exc, ChatError) else t("error.internal", lang)
                lines.append(f"⚠️ {filename}: {message}")
        return self._after("\n\n".join(lines), name, selected, request)

    def remove(
        self, knowledge: str | None, document_id: str | None, selected: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        lang = _lang(request)
        if not _operator(request):
            return self._after("⚠️ " + t("knowledge.operator_only", lang), knowledge, selected, request)
        removed = bool(self.library and knowledge and document_id)
        if removed:
            try:
                removed = self.library.delete_document(knowledge, document_id)  # type: ignore[union-attr,arg-type]
            except ChatError as exc:
                return self._after("⚠️ " + exc.user_message(lang), knowledge, selected, request)
        status = t("knowledge.deleted", lang) if removed else "⚠️ " + t("knowledge.delete_missing", lang)
        return self._after(status, knowledge, selected, request)

    def _after(
        self, status: str, knowledge: str | None, selected: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        names = self.names()
        selector = gr.Dropdown(choices=_choices(names), value=selected if selected in names else "")
        listed = self.listed(knowledge, request)
        return (
            gr.Markdown(status),
            *listed,
            selector,
            gr.File(value=None),
            self.unused(_lang(request), names),
        )

    def loaded(self, knowledge: str | None, request: gr.Request) -> tuple[Any, ...]:
        """On page load: the admin panel for the operator only, with its list, and the hint."""
        operator = self.library is not None and _operator(request)
        listed = self.listed(knowledge, request) if operator else (gr.skip(),) * 3
        return operator, *listed, self.unused(_lang(request))

    def wire(self, demo: gr.Blocks, persona: gr.Dropdown) -> None:
        """Events: the persona picks its knowledge base; the admin panel lists, uploads, deletes."""
        # instant updates: no queue, no spinner
        quiet = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
        persona.input(self.for_persona, persona, self.selector, **quiet)
        listing = [self.documents, self.document, self.target]
        # the panel shows by a class on the page (chat/ui/assets/page.css): no event outputs a container
        demo.load(self.loaded, self.target, [self.operator, *listing, self.hint], **quiet).then(
            None, self.operator, None, js=OPERATOR_JS, queue=False
        )
        self.target.change(self.listed, self.target, listing, **quiet)
        after = [self.status, *listing, self.selector, self.files, self.hint]
        self.upload.click(self.add, [self.target, self.files, self.selector], after, api_visibility="private")
        self.delete.click(
            self.remove, [self.target, self.document, self.selector], after, api_visibility="private"
        )


def knowledge_controls(library: KnowledgeBase | None, personas: Sequence[Persona]) -> KnowledgeControls:
    """The selector and, when there is a knowledge base store, the admin accordion, rendered
    here. The selector starts on the first persona's knowledge base; ``wire`` follows the
    persona dropdown after that."""
    by_title = {p.title: p for p in personas}
    names = _names(library)
    first = persona_knowledge(personas[0] if personas else None, names)
    selector = gr.Dropdown(
        _choices(names),
        value=first or "",
        label=I18N("knowledge"),
        visible=library is not None,
        elem_id="knowledge",
    )
    hint = gr.Markdown(visible=False, elem_id="knowledge-hint")
    # hidden until the page's load event finds the operator behind it
    operator = gr.Checkbox(False, visible=False, elem_id="knowledge-operator")
    with gr.Accordion(
        I18N("knowledge_admin"), open=False, visible=library is not None, elem_id="knowledge-admin"
    ):
        target = gr.Dropdown(
            names,
            value=first,
            allow_custom_value=True,
            label=I18N("knowledge_target"),
            elem_id="knowledge-target",
        )
        files = gr.File(
            file_count="multiple",
            file_types=UPLOAD_TYPES,
            label=I18N("knowledge_files"),
            elem_id="knowledge-files",
        )
        upload = gr.Button(I18N("knowledge_upload"), size="sm", elem_id="knowledge-upload")
        documents = gr.Markdown(elem_id="knowledge-documents")
        document = gr.Dropdown([], label=I18N("knowledge_document"), elem_id="knowledge-document")
        delete = gr.Button(I18N("knowledge_delete"), size="sm", variant="stop", elem_id="knowledge-delete")
        status = gr.Markdown(elem_id="knowledge-status")
    return KnowledgeControls(
        library,
        by_title,
        selector,
        hint,
        operator,
        target,
        files,
        upload,
        documents,
        document,
        delete,
        status,
    )


def _names(library: KnowledgeBase | None) -> list[str]:
    if library is None:
        return []
    try:
        return [info.name for info in library.list_knowledge()]
    except ChatError:
        log.warning("the knowledge bases could not be listed")
        return []


def _choices(names: Sequence[str]) -> list[tuple[str, str]]:
    return [("—", ""), *((name, name) for name in names)]


def _lang(request: gr.Request | None) -> Lang:
    headers = getattr(request, "headers", None) or {}
    return request_language(accept_language=headers.get("accept-language", ""))


def _operator(request: gr.Request | None) -> bool:
    """Whether the door counted this page request as the operator's (a bare Blocks in a unit test,
    with no door before it, is the developer's own)."""
    raw = getattr(request, "request", None)
    if raw is None or OPERATOR_KEY not in raw.scope.get("state", {}):
        return True
    return is_operator(raw)
