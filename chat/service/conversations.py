"""The caller's stored conversations over HTTP, and the turn a chat route keeps in the store.

    GET    /api/conversations[?search=&limit=]   {"conversations": [{"id", "title", ...}]}, newest first
    GET    /api/conversations/{id}               {"id", "title", "messages": [{"role", "content", ...}]}
                                                 (an answer's "sources" as /api/chat gave them)
    PATCH  /api/conversations/{id}               {"title": "..."} renames it
    DELETE /api/conversations/{id}               deletes it with its messages
    DELETE /api/conversations                    deletes everything kept about the caller
    GET    /api/me/export                        everything kept about the caller, as JSON
    GET    /api/me/profile                       {"display_name", "language", "persona", "notes",
    PUT    /api/me/profile                        "use_in_prompt"}: the caller's profile
    POST   /api/conversations/{id}/messages/{message_id}/feedback   {"rating": 1 | -1 | null}

Every route sees only the caller's own data: the owner is decided by the door
(``chat.service.door.identity.owner_of``), and another owner's id answers exactly like a missing one
(404). With ``CHAT_STORE=off`` every route answers 404 saying nothing is kept on the server.
Store calls are short blocking transactions: they run in a worker thread, off the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from chat.errors import ChatError, InputBlocked
from chat.messages import Message
from chat.reply.profiles import FIELDS as PROFILE_FIELDS
from chat.reply.profiles import check_profile, checked_profile, profile_dict
from chat.reply.summaries import summary_text
from chat.reply.turn import StoredConversation
from chat.service.bodies import bool_field, invalid_field, read_json, refusal, reject_unknown, text_field
from chat.service.door.identity import owner_of
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import json_refusals
from chat.service.shared import Service
from chat.store import ConversationNotFound, Store
from chat.store.tables import KEY_MAX

T = TypeVar("T")
LIST_LIMIT = 100  # conversations listed when the caller does not say how many
LIST_PARAMETERS = [
    {"name": "search", "in": "query", "schema": {"type": "string"}, "description": "in titles and messages"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]
RENAME_SCHEMA = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}
PROFILE_SCHEMA = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in PROFILE_FIELDS[:-1]},
        "use_in_prompt": {"type": "boolean"},
    },
}
FEEDBACK_SCHEMA = {
    "type": "object",
    "required": ["rating"],
    "properties": {"rating": {"enum": [1, -1, None]}},
}


def store_off() -> ApiError:
    return refusal(404, "store_off", "api.store_off")


async def in_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one store call off the event loop; its ``ChatError`` becomes the route's ``ApiError``."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))
    except ChatError as exc:
        raise from_chat_error(exc) from None


def _message_key(value: str, field: str) -> str | None:
    if len(value) > KEY_MAX:
        raise invalid_field("api.too_long", field=field, limit=KEY_MAX)
    return value or None


def header_key(request: Request) -> str | None:
    """``/api/chat``'s ``Idempotency-Key`` header: the client's name for the message it sends,
    the same when it sends it again, so the message is stored once (``chat.store.resend``)."""
    return _message_key(request.headers.get("idempotency-key", ""), "Idempotency-Key")


def frame_key(frame: dict[str, Any]) -> str | None:
    """A ``/ws`` message's ``idempotency_key``: as ``header_key``, per message."""
    return _message_key(text_field(frame, "idempotency_key", ""), "idempotency_key")


async def open_turn(
    service: Service, conn: HTTPConnection, conversation_id: str, *, key: str | None = None
) -> tuple[StoredConversation, list[Message]] | None:
    """The conversation a chat turn is kept in, with its stored history: the caller's
    ``conversation_id``, or a new one (``new``: no history yet) when it is empty; with the
    message's ``key``, the new one is the one that key opened before, if it did (the message
    sent again). None with the store off and no id; ``ApiError`` 404 for an id that is not the
    caller's (or store off)."""
    store = service.store
    if store is None:
        if conversation_id:
            raise store_off()
        return None
    owner = owner_of(conn)
    if not conversation_id and key is None:
        info = await in_thread(store.create_conversation, owner)
        return StoredConversation(store, owner, info.id, new=True), []
    if not conversation_id:
        info, created = await in_thread(store.conversation_for, owner, key)
        if created:
            return StoredConversation(store, owner, info.id, new=True, key=key), []
        conversation_id = info.id
    history = await in_thread(store.history, owner, conversation_id)
    return StoredConversation(store, owner, conversation_id, key=key), history


def register(app: FastAPI, service: Service) -> None:
    """The routes of the caller's conversations, their data and their ratings."""

    def store_of() -> Store:
        if service.store is None:
            raise store_off()
        return service.store

    _conversation_routes(app, service, store_of)
    _my_data_routes(app, service, store_of)
    _feedback_route(app, service, store_of)


def _missing(conversation_id: str) -> ApiError:
    """A 404 for a conversation that does not exist or is another owner's (the same answer)."""
    return from_chat_error(ConversationNotFound(conversation_id=conversation_id))


def _conversation_routes(app: FastAPI, service: Service, store_of: Callable[[], Store]) -> None:
    @app.get(
        "/api/conversations",
        tags=["conversations"],
        summary="The caller's conversations, most recently active first",
        openapi_extra={"parameters": LIST_PARAMETERS},
    )
    @json_refusals
    async def list_conversations(request: Request) -> Response:
        store = store_of()
        query = request.query_params
        reject_unknown(query, ("search", "limit"), "api.where_query")
        limit = LIST_LIMIT
        if "limit" in query:
            if not query["limit"].isdigit():
                raise invalid_field("api.not_count", field="limit")
            limit = int(query["limit"])
        found = await in_thread(
            store.list_conversations, owner_of(request), search=query.get("search") or None, limit=limit
        )
        return JSONResponse({"conversations": [c.to_dict() for c in found]})

    @app.get("/api/conversations/{conversation_id}", tags=["conversations"], summary="One conversation")
    @json_refusals
    async def get_conversation(request: Request, conversation_id: str) -> Response:
        found = await in_thread(store_of().get_conversation, owner_of(request), conversation_id)
        if found is None:
            raise _missing(conversation_id)
        data = found.to_dict()
        return JSONResponse({**data, "summary": summary_text(data["summary"])})

    @app.patch(
        "/api/conversations/{conversation_id}",
        tags=["conversations"],
        summary="Rename",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": RENAME_SCHEMA}}}},
    )
    @json_refusals
    async def rename_conversation(request: Request, conversation_id: str) -> Response:
        store = store_of()
        body = await read_json(request, service.max_body)
        reject_unknown(body, ("title",), "api.where_body")
        title = text_field(body, "title", "", required=True)
        if not await in_thread(store.rename, owner_of(request), conversation_id, title):
            raise _missing(conversation_id)
        found = await in_thread(store.get_conversation, owner_of(request), conversation_id)
        if found is None:  # deleted in between
            raise _missing(conversation_id)
        return JSONResponse({"id": found.id, "title": found.title})

    @app.delete("/api/conversations/{conversation_id}", tags=["conversations"], summary="Delete one")
    @json_refusals
    async def delete_conversation(request: Request, conversation_id: str) -> Response:
        if not await in_thread(store_of().delete, owner_of(request), conversation_id):
            raise _missing(conversation_id)
        return JSONResponse({"id": conversation_id, "deleted": True})

    @app.delete("/api/conversations", tags=["conversations"], summary="Delete all my data")
    @json_refusals
    async def delete_all(request: Request) -> Response:
        count = await in_thread(store_of().delete_all, owner_of(request))
        return JSONResponse({"deleted": count})


def _my_data_routes(app: FastAPI, service: Service, store_of: Callable[[], Store]) -> None:
    @app.get("/api/me/export", tags=["conversations"], summary="Export all my data (JSON)")
    @json_refusals
    async def export_all(request: Request) -> Response:
        data = await in_thread(store_of().export_all, owner_of(request))
        profile = data["profile"]
        if profile is not None:  # as GET /api/me/profile shows it
            data["profile"] = {
                **{k: v for k, v in profile.items() if k != "opt_in"},
                "use_in_prompt": profile["opt_in"],
            }
        for conversation in data["conversations"]:
            conversation["summary"] = summary_text(conversation["summary"])
        headers = {"Content-Disposition": 'attachment; filename="chat-export.json"'}
        return JSONResponse(data, headers=headers)

    @app.get("/api/me/profile", tags=["profile"], summary="The caller's profile")
    @json_refusals
    async def get_profile(request: Request) -> Response:
        return JSONResponse(profile_dict(await in_thread(store_of().get_profile, owner_of(request))))

    @app.put(
        "/api/me/profile",
        tags=["profile"],
        summary="Replace the caller's profile (used in the system prompt only with use_in_prompt)",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": PROFILE_SCHEMA}}}},
    )
    @json_refusals
    async def put_profile(request: Request) -> Response:
        store = store_of()
        body = await read_json(request, service.max_body)
        reject_unknown(body, PROFILE_FIELDS, "api.where_body")
        texts = {name: text_field(body, name, "") for name in PROFILE_FIELDS[:-1]}
        try:
            profile = checked_profile(**texts, use_in_prompt=bool_field(body, "use_in_prompt"))
        except ChatError as exc:
            raise from_chat_error(exc) from None
        try:  # the user's own words, judged like a message they send (a guard model may be slow)
            await anyio.to_thread.run_sync(check_profile, service.engine, profile)
        except InputBlocked:
            raise refusal(400, "input_blocked", "error.input_blocked") from None
        await in_thread(store.save_profile, owner_of(request), profile)
        return JSONResponse(profile_dict(profile))


def _feedback_route(app: FastAPI, service: Service, store_of: Callable[[], Store]) -> None:
    @app.post(
        "/api/conversations/{conversation_id}/messages/{message_id}/feedback",
        tags=["conversations"],
        summary="Like (1), dislike (-1) or clear (null) a reply; kept with the message",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": FEEDBACK_SCHEMA}}}},
    )
    @json_refusals
    async def rate_message(request: Request, conversation_id: str, message_id: str) -> Response:
        store, owner = store_of(), owner_of(request)
        body = await read_json(request, service.max_body)
        reject_unknown(body, ("rating",), "api.where_body")
        if "rating" not in body:
            raise invalid_field("api.required", field="rating")
        rating = body["rating"]
        if isinstance(rating, bool) or rating not in (1, -1, None):
            raise invalid_field("api.not_choice", field="rating", choices="1, -1, null")
        found = await in_thread(store.get_conversation, owner, conversation_id)
        if found is None:
            raise _missing(conversation_id)
        replies = {m.id for m in found.messages if m.role == "assistant"}
        if not message_id.isdigit() or int(message_id) not in replies:
            raise refusal(404, "not_found", "api.not_found_message")
        if not await in_thread(store.set_feedback, owner, int(message_id), rating):
            raise refusal(404, "not_found", "api.not_found_message")  # deleted meanwhile
        return JSONResponse(
            {"conversation_id": conversation_id, "message_id": int(message_id), "rating": rating}
        )
