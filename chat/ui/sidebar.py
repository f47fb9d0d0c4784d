"""The page's conversation list, kept on the server: new, open, rename, delete, search, and the
chat turn that stores each message in the open conversation.

The owner is the one the door decided for the request (``chat.service.door.identity.owner_of``): the
logged-in user, or the anonymous browser's signed ``chat_visitor`` cookie, so the list and every
message are there again after a reload, on another device (logged in) or after a restart. A
request the door did not see (a bare Blocks in a unit test) has no owner: nothing is stored.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import gradio as gr
from anyio.to_thread import run_sync as to_thread

from chat.errors import ChatError
from chat.i18n import Lang, detect_language, request_language
from chat.reply.turn import StoredConversation
from chat.service.door.identity import owner_of
from chat.store import Store
from chat.ui.handlers import interrupted_mark, stopped_mark
from chat.ui.knowledge import stored_sources_bubble
from chat.ui.tool_blocks import tool_blocks
from chat.ui.labels import I18N

log = logging.getLogger(__name__)
LIST_LIMIT = 200
WIDE_SCREEN = 1024  # px: from this width the sidebar starts open
# Opened in the browser, not by a load event's output: Gradio's page refreshes the loading state of
# every component an event has output, and of all its children, on each streamed frame for the
# rest of the page's life; the sidebar as an output made each frame copy the whole settings panel.
# Only ever opened here: on a phone the visitor may have opened it already.
OPEN_SIDEBAR_JS = f"""() => {{
    const sidebar = document.querySelector("#sidebar");
    if (window.innerWidth >= {WIDE_SCREEN} && sidebar && !sidebar.classList.contains("open"))
        sidebar.querySelector(".toggle-button")?.click();
}}"""
# On a narrow screen the sidebar covers the chat: choosing a conversation (or a new one) closes it.
CLOSE_SIDEBAR_JS = f"""(...values) => {{
    const sidebar = document.querySelector("#sidebar");
    if (window.innerWidth < {WIDE_SCREEN} && sidebar?.classList.contains("open"))
        sidebar.querySelector(".toggle-button")?.click();
    return values;
}}"""


def page_owner(request: gr.Request | None) -> str | None:
    """Whose conversations this page request may see; None when no door stood before it."""
    raw = getattr(request, "request", None)  # the Starlette request Gradio wraps
    if raw is None:
        return None
    try:
        return owner_of(raw)
    except RuntimeError:
        return None


def _lang(request: gr.Request | None) -> str:
    headers = getattr(request, "headers", None) or {}
    return request_language(accept_language=headers.get("accept-language", ""))


def _error(exc: ChatError, request: gr.Request | None) -> gr.Error:
    return gr.Error(exc.user_message(_lang(request)), print_exception=False)


class ConversationList:
    """The sidebar's conversation list: its controls, events and handlers over one store (None:
    ``CHAT_STORE=off``, nothing kept)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store

    def render(self) -> gr.Radio:
        """The list's controls (inside the sidebar; hidden without a store); returns the list."""
        kept = self.store is not None
        self.new_button = gr.Button(
            I18N("new_chat"), variant="primary", size="sm", visible=kept, elem_id="new-chat"
        )
        self.search_box = gr.Textbox(
            label=I18N("search"), visible=kept, elem_id="conversation-search", max_lines=1
        )
        self.listing = gr.Radio([], label=I18N("conversations"), visible=kept, elem_id="conversation-list")
        with gr.Accordion(I18N("manage"), open=False, visible=kept):
            self.new_title = gr.Textbox(label=I18N("rename_to"), max_lines=1, elem_id="rename-title")
            self.rename_button = gr.Button(I18N("rename"), size="sm", elem_id="rename")
            self.delete_button = gr.Button(I18N("delete"), size="sm", variant="stop", elem_id="delete")
        return self.listing

    def wire(self, chat: gr.ChatInterface, conversation_id: gr.State, synced: gr.State) -> None:
        """The list's events (after ``render``, inside the Blocks). Opening and New chat are
        queued: the chatbot follows ``chatbot_value`` through a state change, which queue=False
        skips."""
        private: dict[str, Any] = {"api_visibility": "private"}
        listing, search = self.listing, self.search_box
        opened = [conversation_id, synced, chat.chatbot_value, self.new_title]
        listing.input(self.open, listing, opened, js=CLOSE_SIDEBAR_JS, **private)
        self.new_button.click(new_chat, None, [*opened, listing], js=CLOSE_SIDEBAR_JS, **private)
        search.change(
            self.search, [search, conversation_id], listing, queue=False, show_progress="hidden", **private
        )
        self.rename_button.click(self.rename, [conversation_id, self.new_title, search], listing, **private)
        self.delete_button.click(self.delete, [conversation_id, search], [*opened, listing], **private)
        # the chatbot's own clear starts a new chat; the cleared one stays in the list
        chat.chatbot.clear(lambda: (None, 0), None, [conversation_id, synced], queue=False, **private)
        chat.chatbot.like(self.like, [chat.chatbot, conversation_id], None, **private)

    def choices(self, owner: str | None, search: str = "") -> list[tuple[str, str]]:
        """``(title, id)`` of the owner's conversations, most recently active first."""
        if self.store is None or owner is None:
            return []
        found = self.store.list_conversations(owner, search=search.strip() or None, limit=LIST_LIMIT)
        return [(info.title or "…", info.id) for info in found]

    def listed(self, request: gr.Request, search: str = "", selected: str | None = None) -> gr.Radio:
        """The list as a Radio update (``selected`` stays marked when it is still there)."""
        try:
            choices = self.choices(page_owner(request), search or "")
        except ChatError as exc:
            raise _error(exc, request) from None
        value = selected if any(cid == selected for _, cid in choices) else None
        return gr.Radio(choices=choices, value=value)

    def search(self, text: str, selected: str | None, request: gr.Request) -> gr.Radio:
        return self.listed(request, text, selected)

    def open(
        self, conversation_id: str | None, request: gr.Request
    ) -> tuple[str | None, int, list[dict], str]:
        """The chosen conversation: its id, its message count, its messages for the chatbot (with
        each answer's sources block, as it was shown when it streamed), and its title."""
        owner = page_owner(request)
        if self.store is None or owner is None or not conversation_id:
            return None, 0, [], ""
        try:
            found = self.store.get_conversation(owner, conversation_id)
        except ChatError as exc:
            raise _error(exc, request) from None
        if found is None:  # deleted meanwhile (another tab or device)
            return None, 0, [], ""
        shown: list[Any] = []
        asked: Lang = "en"  # the sources' title follows the question, as when it streamed
        for m in found.messages:
            if m.role == "user":
                asked = detect_language(m.content)
            shown.extend(tool_blocks(m.tool_calls, asked))  # the calls the reply made, as they streamed
            if m.role != "system" and (m.content or m.role == "user"):
                shown.append({"role": m.role, "content": m.content})
            shown.extend(stored_sources_bubble(m.sources, asked))  # under the reply that used them
            if m.status == "stopped":  # marked as it was when Stop cut it short
                shown.append(stopped_mark(_lang(request)))
            elif m.status == "interrupted":  # the server went away mid-reply
                shown.append(interrupted_mark(_lang(request)))
        return found.id, len(shown), shown, found.title

    def rename(self, conversation_id: str | None, title: str, search: str, request: gr.Request) -> gr.Radio:
        owner = page_owner(request)
        if self.store is not None and owner is not None and conversation_id and title.strip():
            try:
                self.store.rename(owner, conversation_id, title.strip())
            except ChatError as exc:
                raise _error(exc, request) from None
        return self.listed(request, search, conversation_id)

    def delete(self, conversation_id: str | None, search: str, request: gr.Request) -> tuple[Any, ...]:
        """Delete the open conversation; the page then shows a new, empty chat."""
        owner = page_owner(request)
        if self.store is not None and owner is not None and conversation_id:
            try:
                self.store.delete(owner, conversation_id)
            except ChatError as exc:
                raise _error(exc, request) from None
        return None, 0, [], "", self.listed(request, search)

    def like(
        self,
        history: list[dict[str, Any]],
        conversation_id: str | None,
        data: gr.LikeData,
        request: gr.Request,
    ) -> None:
        """Keep a like or dislike with the stored reply it rates (the n-th reply with text)."""
        owner = page_owner(request)
        if self.store is None or owner is None or not conversation_id:
            return
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        nth = sum(
            1
            for item in history[: int(index)]
            if item.get("role") == "assistant" and not (item.get("metadata") or {}).get("title")
        )
        rating = 1 if data.liked is True else -1 if data.liked is False else None
        try:
            found = self.store.get_conversation(owner, conversation_id)
            replies = [m for m in found.messages if m.role == "assistant" and m.content] if found else []
            if nth < len(replies):
                self.store.set_feedback(owner, replies[nth].id, rating)
        except ChatError:
            log.warning("a rating could not be stored")  # the feedback log still has it

    def chat(
        self, respond: Callable[..., AsyncIterator[tuple[Any, ...]]]
    ) -> Callable[..., AsyncIterator[tuple[Any, ...]]]:
        """Wrap the page's chat handler ``respond(message, history, *settings, request=None,
        conversation=None)``: each turn goes into the open conversation (a new one on the first
        message), and the outputs gain the conversation id, the page's message count after the
        turn (``synced``) and the refreshed list.

        A history shorter than ``synced`` was cut by Retry, Undo or an edit: the turn then goes
        into a new conversation holding the history as the page shows it, which replaces the old
        one once it is stored (the store only appends). The wrapper takes the id and the count
        after the history, then ``respond``'s own settings; its signature says so, because Gradio
        reads it to pass the request (last).

        Like ``respond``, the wrapper is an async generator (a reply waiting for the model holds no
        thread); its store calls, short and blocking, run on anyio's worker threads."""
        store = self.store

        async def chat(
            message: str,
            history: list[dict[str, Any]],
            conversation_id: str | None,
            synced: int | None,
            *rest: Any,
        ) -> AsyncIterator[tuple[Any, ...]]:
            *settings, request = rest
            history = history or []
            owner = page_owner(request) if store is not None else None
            conversation = replaced = None
            if store is not None and owner is not None:
                if conversation_id and len(history) < (synced or 0):
                    replaced, conversation_id = conversation_id, None
                try:
                    opened = conversation_id or (await to_thread(store.create_conversation, owner)).id
                    conversation = StoredConversation(store, owner, opened, new=not conversation_id)
                except ChatError:
                    log.warning("the store could not start a conversation: this turn is not kept")
            if conversation is None:
                async with aclosing(respond(message, history, *settings, request=request)) as replies:
                    async for out in replies:
                        yield *out, conversation_id, len(history) + 1 + len(out[0]), gr.skip()
                return
            last: tuple[Any, ...] | None = None
            turn = respond(message, history, *settings, request=request, conversation=conversation)
            async with aclosing(turn) as replies:  # closing the wrapper closes the reply at once
                async for out in replies:
                    # by the first output the user's message is stored (and titles the conversation)
                    listed = (
                        await to_thread(self.refreshed, request, conversation.id)
                        if last is None
                        else gr.skip()
                    )
                    last = out
                    yield *out, conversation.id, len(history) + 1 + len(out[0]), listed
            if last is None or not conversation.new:
                return
            if await to_thread(self._is_empty, owner, conversation.id):  # refused before anything was stored
                await to_thread(self._delete, owner, conversation.id)
                yield *last, replaced, synced, await to_thread(self.refreshed, request, replaced)
            elif replaced:
                await to_thread(self._delete, owner, replaced)
                yield (
                    *last,
                    conversation.id,
                    len(history) + 1 + len(last[0]),
                    await to_thread(self.refreshed, request, conversation.id),
                )

        # Gradio finds where to pass the request by the signature and the resolved type hints.
        parameters = [p for p in inspect.signature(respond).parameters.values() if p.name != "conversation"]
        page = [
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for n in ("conversation_id", "synced")
        ]
        hints = typing.get_type_hints(respond)
        chat.__signature__ = inspect.Signature([*parameters[:2], *page, *parameters[2:]])  # type: ignore[attr-defined]
        chat.__annotations__ = {p.name: hints[p.name] for p in parameters if p.name in hints}
        chat.__wrapped__ = respond  # type: ignore[attr-defined]  # the door counts the page's chat by it
        return chat

    def refreshed(self, request: gr.Request | None, selected: str | None) -> Any:
        """The list after a turn or on page load; a failing store leaves it as it was (the reply and
        the page matter more)."""
        try:
            return self.listed(request, "", selected)
        except gr.Error:
            return gr.skip()

    def _delete(self, owner: str, conversation_id: str) -> None:
        try:
            if self.store is not None:
                self.store.delete(owner, conversation_id)
        except ChatError:
            log.warning("a replaced conversation could not be deleted")

    def _is_empty(self, owner: str, conversation_id: str) -> bool:
        try:
            found = self.store.get_conversation(owner, conversation_id) if self.store else None
        except ChatError:
            return False
        return found is not None and not found.messages


def new_chat() -> tuple[None, int, list, str, gr.Radio]:
    """A new, empty chat: stored only once its first message is sent."""
    return None, 0, [], "", gr.Radio(value=None)
