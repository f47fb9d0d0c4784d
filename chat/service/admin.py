"""The operator's view of how the assistant does, and the data to improve it (issue 34).

    GET /admin                                  the operator page (plots, lists, filters; en/zh)
    GET /api/admin/stats[?since=&until=&persona=]   the page's figures as JSON
    GET /api/admin/feedback/export?format=sft|dpo[&since=&persona=]
                                                rated replies as JSON lines, streamed
    GET /api/admin/conversations/{id}           one conversation, for a disliked reply's context
    GET /api/admin/exports                      who took which export, when, how many rows

Operator only, by the rule that guards knowledge-base writes (``is_operator``), behind the same
door: with a login or token configured the API routes need it; without one only a client on the
server's own machine is the operator. Exports hold what users wrote: each is kept in
``export_log`` (who, when, filters, rows) before its first line is sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from chat.i18n import t
from chat.reply.personas import load_persona_list
from chat.service.bodies import invalid_field, refusal
from chat.service.conversations import in_thread, store_off
from chat.service.door.identity import CLIENT_KEY, is_operator, owner_of
from chat.service.door.policy import Verdict
from chat.service.errors import from_chat_error
from chat.service.replies import asked_language, json_refusals
from chat.service.reply_journal import ReplyJournal
from chat.service.shared import Service
from chat.store import ConversationNotFound, Store
from chat.store.operator_stats import MAX_DAYS, Window, conversation_view, operator_stats
from chat.store.training_export import (
    FORMATS,
    ExportFilter,
    dpo_lines,
    finish_export,
    log_export,
    recent_exports,
    sft_lines,
)

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("admin_page")
ASSETS = {"admin.js": "text/javascript", "admin.css": "text/css"}
DEFAULT_DAYS = 30


def register(app: FastAPI, service: Service) -> None:
    """The routes, and the journal that notes each reply's figures (when there is a store)."""
    if service.store is not None:
        service.tracker.journal = ReplyJournal(service.store, load_persona_list())

    def operator_store(request: Request) -> Store:
        if not is_operator(request):
            raise refusal(403, "forbidden", "admin.operator_only")
        if service.store is None:
            raise store_off()
        return service.store

    @app.get("/admin", include_in_schema=False)
    async def page(request: Request) -> Response:
        lang = asked_language(request)
        if not is_operator(request):
            return HTMLResponse(_sentence("admin.operator_only", lang), status_code=403)
        policy = service.door.policy
        if policy.closed and not _signed_in(service, request):
            return RedirectResponse("/", status_code=303)  # Gradio's login, then come back
        return FileResponse(PAGE / "admin.html", headers={"Cache-Control": "no-store"})

    @app.get("/admin/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            return Response(status_code=404)
        return FileResponse(PAGE / name, media_type=ASSETS[name])

    @app.get("/api/admin/stats", tags=["admin"], summary="The operator page's figures")
    @json_refusals
    async def stats(request: Request) -> Response:
        store = operator_store(request)
        window = _window(request)
        found = await in_thread(operator_stats, store.engine, window)
        return JSONResponse(found)

    @app.get(
        "/api/admin/conversations/{conversation_id}",
        tags=["admin"],
        summary="A conversation, for the operator",
    )
    @json_refusals
    async def conversation(request: Request, conversation_id: str) -> Response:
        store = operator_store(request)
        found = await in_thread(conversation_view, store.engine, conversation_id)
        if found is None:
            raise from_chat_error(ConversationNotFound(conversation_id=conversation_id))
        return JSONResponse(found)

    @app.get("/api/admin/exports", tags=["admin"], summary="Training exports taken so far")
    @json_refusals
    async def exports(request: Request) -> Response:
        store = operator_store(request)
        return JSONResponse({"exports": await in_thread(recent_exports, store.engine)})

    @app.get("/api/admin/feedback/export", tags=["admin"], summary="Rated replies as JSON lines (sft or dpo)")
    @json_refusals
    async def export(request: Request) -> Response:
        store = operator_store(request)
        fmt = request.query_params.get("format", "")
        if fmt not in FORMATS:
            raise invalid_field("api.not_choice", field="format", choices=", ".join(FORMATS))
        selected = ExportFilter(since=_since(request), persona=request.query_params.get("persona") or None)
        who = f"{owner_of(request)} ({request.scope.get('state', {}).get(CLIENT_KEY, '?')})"
        entry = await in_thread(log_export, store.engine, operator=who, fmt=fmt, selected=selected)
        lines = (sft_lines if fmt == "sft" else dpo_lines)(store.engine, selected)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return StreamingResponse(
            _counted(store, entry, who, fmt, lines),
            media_type="application/x-ndjson",
            headers={
                "Content-Disposition": f'attachment; filename="chat-{fmt}-{stamp}.jsonl"',
                "Cache-Control": "no-store",
            },
        )


def _counted(
    store: Store, entry: int, who: str, fmt: str, lines: Iterator[dict[str, Any]]
) -> Iterator[bytes]:
    """The lines as bytes; the export's log entry gets its row count when they end (or stop)."""
    rows, complete = 0, False
    try:
        for line in lines:
            yield (json.dumps(line, ensure_ascii=False) + "\n").encode()
            rows += 1
        complete = True
    finally:
        log.info("training export %s by %s: %d rows%s", fmt, who, rows, "" if complete else " (cut short)")
        try:
            finish_export(store.engine, entry, rows=rows, complete=complete)
        except Exception:  # noqa: BLE001 - the log line above already holds the figures
            log.warning("the export log entry %d could not be completed", entry)


def _signed_in(service: Service, request: Request) -> bool:
    """Whether the page's caller passed the configured lock (as the door lets API calls in)."""
    door = service.door
    verdict = door.policy.verdict(request.headers.get("authorization", ""))
    return verdict is Verdict.VALID or door.sessions.logged_in(dict(request.cookies))


def _date(request: Request, name: str) -> date | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise invalid_field("admin.bad_date", field=name, value=text[:40]) from None


def _window(request: Request) -> Window:
    today = datetime.now(UTC).date()
    until = _date(request, "until") or today
    since = _date(request, "since") or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        since, until = until, since
    since = max(since, until - timedelta(days=MAX_DAYS - 1))
    return Window(since, until, request.query_params.get("persona") or None)


def _since(request: Request) -> datetime | None:
    text = request.query_params.get("since", "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_field("admin.bad_date", field="since", value=text[:40]) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sentence(key: str, lang: str) -> str:
    text = t(key, "zh" if lang == "zh" else "en")
    return f'<!doctype html><meta charset="utf-8"><title>403</title><p>{text}</p><p><a href="/">↩</a></p>'
