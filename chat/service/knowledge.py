"""Knowledge bases over HTTP: the operator uploads, lists and deletes documents.

    GET    /api/knowledge                          {"knowledge": [{"name", "documents", "chunks"}]}
    GET    /api/knowledge/{name}/documents         {"knowledge", "documents": [{"id", "name", "chunks", ...}]}
    POST   /api/knowledge/{name}/documents         multipart field ``file`` (one or more)
                                                   -> 201 {"documents": [{"id", "name", "chunks"}]}
    DELETE /api/knowledge/{name}/documents/{id}    {"id", "deleted": true}

They stand behind the door like every ``/api`` route: with a login or ``CHAT_API_TOKEN`` set, they
need it; an open app (no auth configured) lets anyone upload (the README says so). A body over
the files' limit (``--knowledge-max-bytes`` each, 10 files) is refused by its length, or cut off
while it is read (the parser spools files to disk); refusals are the service's one JSON error
shape, in the caller's language. Parsing and indexing run in a worker thread, off the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from chat.i18n import Lang
from chat.knowledge import KnowledgeBase, KnowledgeNotFound
from chat.service.bodies import invalid_field, refusal
from chat.service.conversations import in_thread
from chat.service.door.identity import is_operator
from chat.service.errors import ApiError, from_chat_error
from chat.service.replies import json_refusals
from chat.service.shared import Service

MAX_FILES = 10  # documents one upload request may carry
MULTIPART_SLACK = 64 * 1024  # multipart framing around the files
UPLOAD_SCHEMA = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        }
    }
}


def register(app: FastAPI, service: Service) -> None:
    max_bytes = service.settings.knowledge_max_bytes
    body_limit = MAX_FILES * max_bytes + MULTIPART_SLACK

    def library(request: Request) -> KnowledgeBase:
        found = getattr(request.app.state, "knowledge", None)
        if found is None:  # an app built without build_app (a bare test app)
            raise refusal(503, "knowledge_unavailable", "knowledge.error", detail="not configured")
        return found

    @app.get("/api/knowledge", tags=["knowledge"], summary="Knowledge bases and their sizes")
    @json_refusals
    async def list_knowledge(request: Request) -> Response:
        found = await in_thread(library(request).list_knowledge)
        return JSONResponse({"knowledge": [k.to_dict() for k in found]})

    @app.get("/api/knowledge/{name}/documents", tags=["knowledge"], summary="Documents of a knowledge base")
    @json_refusals
    async def list_documents(request: Request, name: str) -> Response:
        found = await in_thread(library(request).list_documents, name)
        if not found:
            raise from_chat_error(KnowledgeNotFound(name=name))
        return JSONResponse({"knowledge": name, "documents": [d.to_dict() for d in found]})

    @app.post(
        "/api/knowledge/{name}/documents",
        tags=["knowledge"],
        summary="Add documents (.md .txt .csv .html .pdf .docx); the same name replaces",
        status_code=201,
        openapi_extra={"requestBody": {"required": True, "content": UPLOAD_SCHEMA}},
    )
    @json_refusals
    async def upload(request: Request, name: str) -> Response:
        operator_only(request)
        kb = library(request)
        added = []
        async with _files(request, body_limit) as files:
            for upload in files:
                data = await upload.read()
                filename = upload.filename or ""
                try:
                    info = await in_thread(kb.add_document, name, filename, data)
                except ApiError as exc:
                    if len(files) > 1:  # say which file; the ones before it were added
                        raise _naming(exc, filename) from None
                    raise
                added.append({"id": info.id, "name": info.name, "chunks": info.chunks})
        return JSONResponse({"documents": added}, status_code=201)

    @app.delete(
        "/api/knowledge/{name}/documents/{document_id}", tags=["knowledge"], summary="Delete a document"
    )
    @json_refusals
    async def delete_document(request: Request, name: str, document_id: str) -> Response:
        operator_only(request)
        if not await in_thread(library(request).delete_document, name, document_id):
            raise from_chat_error(KnowledgeNotFound(name=f"{name}/{document_id}"))
        return JSONResponse({"id": document_id, "deleted": True})


def operator_only(request: Request) -> None:
    """403 unless the door counted the caller as the operator (``is_operator``)."""
    if not is_operator(request):
        raise refusal(403, "forbidden", "knowledge.operator_only")


class _TooLarge(Exception):
    """The body went past the limit while the multipart parser read it."""


@contextlib.asynccontextmanager
async def _files(request: Request, limit: int) -> AsyncIterator[list[UploadFile]]:
    """The ``file`` parts of a multipart body no larger than ``limit`` (413 past it, else 400),
    spooled to temporary files by the parser, not held in memory; closed afterwards."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refusal(413, "payload_too_large", "api.too_large", limit=limit)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise invalid_field("api.file_required")
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await request.receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise _TooLarge
        return message

    try:
        form = await Request(request.scope, counted).form(max_files=MAX_FILES, max_fields=MAX_FILES)
    except _TooLarge:
        raise refusal(413, "payload_too_large", "api.too_large", limit=limit) from None
    except (MultiPartException, HTTPException):  # a malformed body, too many parts, long headers
        raise invalid_field("api.multipart") from None
    try:
        files = [part for part in form.getlist("file") if isinstance(part, UploadFile)]
        if not files:
            raise invalid_field("api.file_required")
        yield files
    finally:
        await form.close()


def _naming(exc: ApiError, filename: str) -> ApiError:
    shown = filename if len(filename) <= 80 else filename[:80] + "…"

    def text(lang: Lang) -> str:
        return f"{shown}: {exc.body(lang=lang)['error']['message']}"

    return ApiError(exc.status, exc.kind, headers=exc.headers, text=text)
