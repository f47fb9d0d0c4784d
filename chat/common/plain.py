"""A record as JSON-ready values, for the records whose JSON form is every field as it is.

One place decides how such a field is written (a ``datetime`` as ISO 8601 text), so the API
answers, the export and the stored sources agree.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any


def plain_dict(record: Any) -> dict[str, Any]:
    """Every field of the dataclass ``record``, in declaration order; datetimes as ISO text."""
    out: dict[str, Any] = {}
    for item in fields(record):
        value = getattr(record, item.name)
        out[item.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


__all__ = ["plain_dict"]
