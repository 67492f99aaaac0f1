"""Opaque pagination cursors.

A cursor is the position of the last item of a page, ``(timestamp, id)``, as unpadded base64url of a
small JSON array. Clients must treat it as opaque; a cursor that does not decode (see
:mod:`automation_core.cursors`), or whose time lies outside the platform's range
(:func:`automation_contracts.primitives.check_instant`), is a 422 naming ``cursor``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from automation_contracts.primitives import check_instant
from automation_core.cursors import decode_cursor_json, encode_cursor_json
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
    return encode_cursor_json([position.at.isoformat(), str(position.id)])


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; :class:`InvalidInput` (field ``cursor``) when it is not one of ours."""
    try:
        at_text, id_text = decode_cursor_json(cursor)
        return Position(at=check_instant(datetime.fromisoformat(at_text)), id=uuid.UUID(id_text))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(_BAD_CURSOR, field="cursor") from exc
