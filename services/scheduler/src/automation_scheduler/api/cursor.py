"""Opaque list cursors: url-safe base64 of the last item's sort key (:mod:`automation_core.cursors`).

A cursor that does not decode, or whose time lies outside the platform's range
(:func:`automation_contracts.primitives.check_instant`), is a 422 naming ``cursor``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from automation_contracts.primitives import check_instant
from automation_core.cursors import decode_cursor_text, encode_cursor_text
from automation_core.errors import InvalidInput


def encode(value: str) -> str:
    """An opaque cursor for a sort key."""
    return encode_cursor_text(value)


def _decode(cursor: str) -> str:
    try:
        return decode_cursor_text(cursor)
    except ValueError as exc:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from exc


def decode_uuid(cursor: str | None) -> uuid.UUID | None:
    """The job id a schedules cursor stands for."""
    if cursor is None:
        return None
    try:
        return uuid.UUID(_decode(cursor))
    except ValueError as exc:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from exc


def encode_pair(at: datetime, key: str) -> str:
    """A cursor for a (time, text) sort key."""
    return encode(f"{at.isoformat()}|{key}")


def decode_pair(cursor: str | None) -> tuple[datetime, str] | None:
    """The (time, text) sort key a cursor stands for."""
    if cursor is None:
        return None
    at, sep, key = _decode(cursor).partition("|")
    if not sep:
        raise InvalidInput("cursor is not one this API returned", field="cursor")
    try:
        value = check_instant(datetime.fromisoformat(at))
    except ValueError as exc:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from exc
    return value, key
