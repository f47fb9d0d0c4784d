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
from pathlib import Path
from typing import Any

import gradio as gr
from anyio.to_thread import run_sync as to_thread

from chat.errors import ChatError
from chat.i18n import Lang, detect_language, request_language
from chat.knowledge.context import without_markers
from chat.reply import transcript
from chat.reply.turn import StoredConversation
from chat.service.door.identity import owner_of
from chat.store import Store
from chat.ui.bubbles import interrupted_mark, stopped_mark
from chat.ui.deletion import UNDO_SECONDS, PendingDeletes
from chat.ui.knowledge import stored_sources_bubble
from chat.ui.labels import I18N
from chat.ui.tool_blocks import tool_blocks

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
        self.pending = PendingDeletes(store)  # deleted on the page, undoable for a few seconds

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
        # each shown and hidden by itself: no event outputs a container (tests/test_page_conversations.py)
        self.undo_bar = [
            gr.Markdown(I18N("deleted"), visible=False, elem_id="delete-undo"),
            gr.Button(I18N("undo"), size="sm", visible=False, elem_id="undo-delete"),
        ]
        self.undo_button = self.undo_bar[1]
        self.deleted = gr.State(None)  # the conversation Undo would bring back
        self.undo_timer = gr.Timer(UNDO_SECONDS, active=False)
        with gr.Accordion(I18N("manage"), open=False, visible=kept):
            self.new_title = gr.Textbox(label=I18N("rename_to"), max_lines=1, elem_id="rename-title")
            self.rename_button = gr.Button(I18N("rename"), size="sm", elem_id="rename")
            self.delete_button = gr.Button(I18N("delete"), size="sm", variant="stop", elem_id="delete")
            self.confirm = [
                gr.Markdown(I18N("delete_confirm"), visible=False, elem_id="delete-confirm"),
                gr.Button(I18N("delete_yes"), size="sm", variant="stop", visible=False, elem_id="delete-yes"),
                gr.Button(I18N("delete_no"), size="sm", visible=False, elem_id="delete-no"),
            ]
            self.confirm_button, self.cancel_button = self.confirm[1:]
        return self.listing

    def wire(
        self, chat: gr.ChatInterface, conversation_id: gr.State, synced: gr.State, stats: gr.Markdown
    ) -> None:
        """The list's events (after ``render``, inside the Blocks). Opening and New chat are
        queued: the chatbot follows ``chatbot_value`` through a state change, which queue=False
        skips. ``self.opening`` and ``self.undoing`` are the events that open a conversation
        (the layout restores its persona after them)."""
        private: dict[str, Any] = {"api_visibility": "private"}
        quick: dict[str, Any] = {"queue": False, "show_progress": "hidden", **private}
        listing, search = self.listing, self.search_box
        opened = [conversation_id, synced, chat.chatbot_value, self.new_title]
        shown = [*opened, chat.chatbot, stats]  # the chat with its ratings, and no stale stats line
        self.opening = listing.input(self.open_page, listing, shown, js=CLOSE_SIDEBAR_JS, **private)
        self.new_button.click(new_chat, None, [*opened, listing, stats], js=CLOSE_SIDEBAR_JS, **private)
        search.change(self.search, [search, conversation_id], listing, **quick)
        self.rename_button.click(self.rename, [conversation_id, self.new_title, search], listing, **private)
        self.delete_button.click(lambda cid: _shown(3, bool(cid)), conversation_id, self.confirm, **quick)
        self.cancel_button.click(lambda: _shown(3, False), None, self.confirm, **quick)
        undo = [*self.undo_bar, self.deleted, self.undo_timer]
        self.confirm_button.click(
            self.delete_page,
            [conversation_id, search],
            [*opened, listing, stats, *self.confirm, *undo],
            **private,
        )
        self.undoing = self.undo_button.click(
            self.undo, [self.deleted, search], [*shown, listing, *undo], **private
        )
        self.undo_timer.tick(lambda: (*_shown(2, False), None, gr.Timer(active=False)), None, undo, **quick)
        # the chatbot's own clear starts a new chat; the cleared one stays in the list, unselected
        chat.chatbot.clear(new_chat, None, [*opened, listing, stats], **quick)
        chat.chatbot.undo(lambda: "", None, stats, **quick)
        chat.chatbot.like(self.like, [chat.chatbot, conversation_id], None, **private)

    def choices(self, owner: str | None, search: str = "") -> list[tuple[str, str]]:
        """``(title, id)`` of the owner's conversations, most recently active first."""
        if self.store is None or owner is None:
            return []
        found = self.store.list_conversations(owner, search=search.strip() or None, limit=LIST_LIMIT)
        hidden = self.pending.hidden(owner)
        return [(info.title or "…", info.id) for info in found if info.id not in hidden]

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
        return self.open_page(conversation_id, request)[:4]

    def open_page(self, conversation_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        """``open``, then the chatbot with each reply's like or dislike, and an empty stats line."""
        owner = page_owner(request)
        closed = (None, 0, [], "", gr.Chatbot(feedback_value=[]), "")
        if self.store is None or owner is None or not conversation_id:
            return closed
        try:
            found = self.store.get_conversation(owner, conversation_id)
        except ChatError as exc:
            raise _error(exc, request) from None
        if found is None or found.id in self.pending.hidden(owner):  # deleted meanwhile
            return closed
        shown: list[Any] = []
        rated: list[int | None] = []  # the stored rating behind each shown message
        asked: Lang = "en"  # the sources' title follows the question, as when it streamed
        for m in found.messages:
            if m.role == "user":
                asked = detect_language(m.content)
            shown.extend(tool_blocks(m.tool_calls, asked))  # the calls the reply made, as they streamed
            if m.role != "system" and (m.content or m.role == "user"):
                content = without_markers(m.content) if m.role == "assistant" else m.content
                shown.append({"role": m.role, "content": content})
            shown.extend(stored_sources_bubble(m.sources, asked))  # under the reply that used them
            if m.status == "stopped":  # marked as it was when Stop cut it short
                shown.append(stopped_mark(_lang(request)))
            elif m.status == "interrupted":  # the server went away mid-reply
                shown.append(interrupted_mark(_lang(request)))
            rated.extend([m.rating] * (len(shown) - len(rated)))
        ratings = _feedback(shown, rated)
        return found.id, len(shown), shown, found.title, gr.Chatbot(feedback_value=ratings), ""

    def rename(self, conversation_id: str | None, title: str, search: str, request: gr.Request) -> gr.Radio:
        owner = page_owner(request)
        if self.store is not None and owner is not None and conversation_id and title.strip():
            try:
                self.store.rename(owner, conversation_id, title.strip())
            except ChatError as exc:
                raise _error(exc, request) from None
        return self.listed(request, search, conversation_id)

    def delete(self, conversation_id: str | None, search: str, request: gr.Request) -> tuple[Any, ...]:
        """Delete the open conversation (the store drops it after the undo time); the page then
        shows a new, empty chat."""
        owner = page_owner(request)
        if self.store is not None and owner is not None and conversation_id:
            self.pending.schedule(owner, conversation_id)
        return None, 0, [], "", self.listed(request, search)

    def delete_page(self, conversation_id: str | None, search: str, request: gr.Request) -> tuple[Any, ...]:
        """``delete`` as the confirmation's button does it: with an empty stats line, the
        confirmation closed, and Undo offered for ``UNDO_SECONDS``."""
        deleted = bool(conversation_id)
        return (
            *self.delete(conversation_id, search, request),
            "",
            *_shown(3, False),
            *_shown(2, deleted),
            conversation_id,
            gr.Timer(active=deleted),
        )

    def undo(self, conversation_id: str | None, search: str, request: gr.Request) -> tuple[Any, ...]:
        """Bring back the conversation just deleted, open."""
        owner = page_owner(request)
        if owner is None or not conversation_id or not self.pending.undo(owner, conversation_id):
            kept = (gr.skip(),) * 6
        else:
            kept = self.open_page(conversation_id, request)
        hidden = (*_shown(2, False), None, gr.Timer(active=False))
        return *kept, self.listed(request, search, conversation_id), *hidden

    def imported(self, path: str | None, request: gr.Request) -> tuple[Any, ...]:
        """An imported JSON file as a new conversation, listed and open at once (without a store,
        on the page and in the browser's history, under a new id there: the last item). A bad file
        is explained in the browser's language."""
        if not path:
            return (gr.skip(),) * 6
        owner = page_owner(request)
        try:
            messages = transcript.from_json(Path(path).read_bytes())
            if self.store is None or owner is None:
                return None, 0, messages, "", gr.skip(), None
            created = self.store.create_conversation(owner)
            for m in messages:
                self.store.add_message(owner, created.id, m["role"], m["content"])
            opened = self.open(created.id, request)
        except ChatError as exc:
            raise _error(exc, request) from None
        return *opened, self.listed(request, "", created.id), None

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


def new_chat() -> tuple[None, int, list, str, gr.Radio, str]:
    """A new, empty chat (stored only once its first message is sent), with no stats line."""
    return None, 0, [], "", gr.Radio(value=None), ""


def _feedback(shown: list[Any], rated: list[int | None]) -> list[str | None]:
    """The chatbot's ``feedback_value``: one entry per run of assistant bubbles (a reply with its
    notices and sources), "Like", "Dislike" or None."""
    runs: list[str | None] = []
    for i, message in enumerate(shown):
        if _role(message) != "assistant":
            continue
        if i == 0 or _role(shown[i - 1]) != "assistant":
            runs.append(None)
        if rated[i]:
            runs[-1] = "Like" if rated[i] > 0 else "Dislike"
    return runs


def _shown(count: int, visible: bool) -> tuple[Any, ...]:
    """``count`` components shown or hidden (the delete confirmation's three, Undo's two)."""
    return tuple(gr.update(visible=visible) for _ in range(count))


def _role(message: Any) -> str | None:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)
