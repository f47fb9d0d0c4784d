"""``--mcp-server``: the app as an MCP server at ``/gradio_api/mcp/``, for other agents.

Gradio's MCP support (``gradio[mcp]``) serves a small Blocks of its own with three curated tools,
not the page's events: ``ask`` (a reply from the assistant, with a persona and a knowledge base),
``search_knowledge`` (the best passages of a knowledge base) and ``list_knowledge_bases``. Streamable
HTTP at ``/gradio_api/mcp/`` (and Gradio's SSE transport under it). It stands behind the same door
as every route: with a login or ``CHAT_API_TOKEN`` a client needs HTTP Basic or the bearer token,
and each ``ask`` counts against the caller's rate limit and the model's queue like a ``/ws``
message. Replies run through the tracked pipeline, so guards, metrics and the request log apply.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import gradio as gr
from fastapi import FastAPI

from chat.errors import ChatError
from chat.i18n import detect_language
from chat.knowledge.context import retrieve
from chat.messages import Message
from chat.reply.personas import Persona
from chat.reply.turn import OUTCOMES, Failure, ReplyRequest
from chat.service.door.identity import CLIENT_KEY
from chat.service.errors import ApiError
from chat.service.shared import Service
from chat.service.tracking import RequestRecord

MCP_PATH = "/gradio_api/mcp"
ENTRY = "mcp"  # the entry point's name in /metrics and the request log
MAX_QUESTION = 8_000


class CuratedTools:
    """The functions the MCP server offers; Gradio reads their names, docstrings and type hints."""

    def __init__(self, service: Service, personas: Sequence[Persona]) -> None:
        self.service = service
        self.personas = list(personas)

    def ask(self, question: str, persona: str = "", knowledge: str = "", request: gr.Request = None) -> str:
        """Ask the assistant and get its whole reply.

        Args:
            question: the question or message, in any language the assistant speaks
            persona: a persona's title or key (as on the page); empty for the default assistant
            knowledge: answer from this knowledge base (see list_knowledge_bases); empty for the persona's own
        """
        lang = detect_language(question or "")
        chosen = self._persona(persona, lang)
        state = _state(request)
        try:
            self.service.door.admit_message(state.get(CLIENT_KEY, "mcp"), lang)
        except ApiError as exc:
            raise gr.Error(exc.message, print_exception=False) from None
        system = [Message("system", chosen.prompt)] if chosen is not None and chosen.prompt else []
        reply = ReplyRequest(
            messages=[*system, Message("user", (question or "")[:MAX_QUESTION])],
            params=self.service.defaults,
            knowledge=knowledge.strip() or (chosen.knowledge if chosen is not None else None),
        )
        record = RequestRecord(ENTRY, client=state.get(CLIENT_KEY, "mcp"))
        outcome = None
        try:
            for step in self.service.tracker.run(record, reply):
                if isinstance(step, OUTCOMES):
                    outcome = step
        finally:
            self.service.tracker.finish(record)
        if isinstance(outcome, Failure):
            raise gr.Error(outcome.error.user_message(lang), print_exception=False)
        return outcome.text if outcome is not None else ""

    def search_knowledge(self, query: str, knowledge: str) -> str:
        """Search a knowledge base; the best passages first, as JSON.

        Args:
            query: what to look for
            knowledge: the knowledge base's name (see list_knowledge_bases)
        """
        try:
            found = retrieve(self.service.knowledge, knowledge.strip(), query)
        except ChatError as exc:
            raise gr.Error(exc.user_message(detect_language(query or "")), print_exception=False) from None
        passages = [{"document": s.document, "heading": s.heading, "text": s.text} for s in found]
        return json.dumps(passages, ensure_ascii=False)

    def list_knowledge_bases(self) -> str:
        """The knowledge bases the assistant can answer from, as JSON: name, documents, chunks."""
        library: Any = self.service.knowledge
        listed = (
            library.list_knowledge() if library is not None and hasattr(library, "list_knowledge") else []
        )
        return json.dumps([info.to_dict() for info in listed], ensure_ascii=False)

    def _persona(self, name: str, lang: str) -> Persona | None:
        name = (name or "").strip()
        matches = [p for p in self.personas if name in (p.title, p.key)] if name else self.personas[:1]
        same = [p for p in matches if p.lang == lang] or matches
        if name and not same:
            titles = ", ".join(sorted({p.title for p in self.personas}))
            raise gr.Error(f"no persona named {name!r}; personas: {titles}", print_exception=False)
        if not name and self.personas:
            key = self.personas[0].key
            same = [p for p in self.personas if p.key == key and p.lang == lang] or same
        return same[0] if same else None


def _state(request: gr.Request | None) -> dict[str, Any]:
    """The door's notes on this request (client key, owner), from the MCP POST's scope."""
    try:
        scope = request.scope  # Gradio hands the MCP call's own Starlette request in
    except AttributeError:
        return {}
    return scope.get("state", {}) if isinstance(scope, dict) else {}


def mount_mcp_server(
    app: FastAPI,
    service: Service,
    personas: Sequence[Persona],
    building: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> None:
    """Serve the curated tools at ``/gradio_api/mcp/`` (before the page is mounted at ``/``);
    ``building`` wraps the Blocks' construction (the server's ``one_gradio_app``)."""
    from gradio.mcp import GradioMCPServer

    tools = CuratedTools(service, personas)
    with building(), gr.Blocks(title="Self-hosted Chat") as blocks:
        gr.api(tools.ask, api_name="ask", queue=False)
        gr.api(tools.search_knowledge, api_name="search_knowledge", queue=False)
        gr.api(tools.list_knowledge_bases, api_name="list_knowledge_bases", queue=False)
    server = GradioMCPServer(blocks)
    server.launch_mcp_on_sse(app, MCP_PATH, "")
    before = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(host: FastAPI) -> AsyncIterator[Any]:
        async with before(host) as state, server.lifespan(host):
            yield state

    app.router.lifespan_context = lifespan
    app.state.mcp_server = server
