"""Opaque list cursors: url-safe base64 of the last item's sort key."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from automation_core.errors import InvalidInput


def encode(value: str) -> str:
    """An opaque cursor for a sort key."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
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
        value = datetime.fromisoformat(at)
    except ValueError as exc:
        raise InvalidInput("cursor is not one this API returned", field="cursor") from exc
    if value.tzinfo is None:
        raise InvalidInput("cursor is not one this API returned", field="cursor")
    return value, key
