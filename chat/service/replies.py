"""The JSON a reply and its events become, shared by ``/api/chat`` (JSON and SSE) and ``/ws``."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from chat.errors import ChatError
from chat.i18n import Lang
from chat.messages import Done, Event, Notice, Stats, TextDelta, Waiting
from chat.service.tracking import RequestRecord

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def stats_fields(stats: Stats) -> dict[str, Any]:
    fields = asdict(stats)
    extra = fields.pop("extra", None)
    if extra:
        fields["extra"] = extra
    return fields


def reply_body(done: Done, notices: list[Notice], record: RequestRecord) -> dict[str, Any]:
    """``{"reply": ..., <stats>, "notices": [...]}``: the full reply the user saw, with its figures."""
    return {
        "id": record.id,
        "reply": done.text,
        "blocked": done.stats.finish_reason == "blocked",
        **stats_fields(done.stats),
        "notices": [{"kind": n.kind, "text": n.text} for n in notices],
    }


def refusal_body(exc: ChatError, lang: Lang, record: RequestRecord) -> dict[str, Any]:
    """A filtered request is answered, not failed: the refusal is the reply."""
    stats = Stats(backend=record.backend, finish_reason="blocked")
    return reply_body(Done(exc.user_message(lang), stats), [], record)


def event_fields(event: Event) -> tuple[str, dict[str, Any]]:
    """(type, payload) of a streamed event other than ``Done``."""
    match event:
        case TextDelta(text=text):
            return "delta", {"text": text}
        case Notice(kind=kind, text=text):
            return "notice", {"kind": kind, "text": text}
        case Waiting(position=position, status=status):
            return "waiting", {"position": position, **({"status": status} if status else {})}
    raise TypeError(f"not a streamed event: {event!r}")


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def sse(event: str | None, data: Any) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else dumps(data)}\n\n"
