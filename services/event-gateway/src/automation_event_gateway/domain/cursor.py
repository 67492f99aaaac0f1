"""Opaque keyset cursors for newest-first listings: the (received_at, uuid) of the last item sent."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class EventCursor:
    """Position after which the next page starts (exclusive)."""

    received_at: datetime
    uuid: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps([self.received_at.isoformat(), str(self.uuid)], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> EventCursor:
        """ValueError when ``text`` is not a cursor this service issued."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            at, ident = json.loads(raw)
            received_at = datetime.fromisoformat(at)
            value = uuid.UUID(ident)
        except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
            raise ValueError("not a cursor from this listing") from exc
        if received_at.tzinfo is None:
            raise ValueError("not a cursor from this listing")
        return cls(received_at, value)


def encode_name_cursor(name: str) -> str:
    """A cursor for listings ordered by a name (event types)."""
    return base64.urlsafe_b64encode(name.encode()).decode("ascii").rstrip("=")


def decode_name_cursor(text: str) -> str:
    """ValueError when ``text`` is not a name cursor."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor from this listing") from exc
