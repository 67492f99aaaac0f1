"""Opaque keyset cursors for newest-first listings: the (received_at, uuid) of the last item sent.

Decoded by :mod:`automation_core.cursors`; a time outside the platform's range
(:func:`automation_contracts.primitives.check_instant`) is no cursor either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from automation_contracts.primitives import check_instant
from automation_core.cursors import decode_cursor_json, decode_cursor_text, encode_cursor_json, encode_cursor_text


@dataclass(frozen=True, slots=True)
class EventCursor:
    """Position after which the next page starts (exclusive)."""

    received_at: datetime
    uuid: uuid.UUID

    def encode(self) -> str:
        return encode_cursor_json([self.received_at.isoformat(), str(self.uuid)])

    @classmethod
    def decode(cls, text: str) -> EventCursor:
        """ValueError when ``text`` is not a cursor this service issued."""
        try:
            at, ident = decode_cursor_json(text)
            return cls(check_instant(datetime.fromisoformat(at)), uuid.UUID(ident))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError("not a cursor from this listing") from exc


def encode_name_cursor(name: str) -> str:
    """A cursor for listings ordered by a name (event types)."""
    return encode_cursor_text(name)


def decode_name_cursor(text: str) -> str:
    """ValueError when ``text`` is not a name cursor."""
    try:
        return decode_cursor_text(text)
    except ValueError as exc:
        raise ValueError("not a cursor from this listing") from exc
