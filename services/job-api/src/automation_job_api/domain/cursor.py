"""Opaque pagination cursors.

A cursor is the position of the last item of a page, ``(timestamp, id)``, as unpadded base64url of a
small JSON array. Clients must treat it as opaque; a cursor that does not decode is a 422 naming
``cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from automation_core.errors import InvalidInput

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
_BAD_CURSOR = "cursor is not valid; pass next_cursor from a previous page"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a keyset page ends: the sort timestamp and the id that breaks ties."""

    at: datetime
    id: uuid.UUID


def encode_cursor(position: Position) -> str:
    """The opaque text of ``position``."""
    raw = json.dumps([position.at.isoformat(), str(position.id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; :class:`InvalidInput` (field ``cursor``) when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, id_text = json.loads(raw)
        position = Position(at=datetime.fromisoformat(at_text), id=uuid.UUID(id_text))
    except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
        raise InvalidInput(_BAD_CURSOR, field="cursor") from exc
    if position.at.tzinfo is None:
        raise InvalidInput(_BAD_CURSOR, field="cursor")
    return position
