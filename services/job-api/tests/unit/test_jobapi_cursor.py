"""Opaque keyset cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from automation_core.errors import InvalidInput
from automation_job_api.domain.cursor import Position, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_a_cursor_round_trips_its_position_exactly(at: datetime) -> None:
    position = Position(at=at, id=uuid.uuid4())
    cursor = encode_cursor(position)
    assert "=" not in cursor
    assert decode_cursor(cursor) == position


def test_cursors_are_url_safe_and_opaque() -> None:
    cursor = encode_cursor(Position(at=datetime(2026, 1, 1, tzinfo=UTC), id=uuid.UUID(int=0)))
    assert all(c.isalnum() or c in "-_" for c in cursor)
    assert "2026" not in cursor


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%",
        _b64(b"not json"),
        _b64(b"{}"),
        _b64(b"[1, 2]"),
        _b64(b'["2026-01-01T00:00:00+00:00"]'),
        _b64(b'["yesterday", "00000000-0000-0000-0000-000000000000"]'),
        _b64(b'["2026-01-01T00:00:00+00:00", "not-a-uuid"]'),
        _b64(b'["2026-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"]'),
        # deeply nested JSON (RecursionError in the parser), NUL, times without a UTC value in range
        _b64(b"[" * 5000),
        _b64(b'["2026-01-01T00:00:00+00:00\x00", "00000000-0000-0000-0000-000000000000"]'),
        _b64(b'["0001-01-01T00:00:00+14:00", "00000000-0000-0000-0000-000000000000"]'),
        _b64(b'["9999-12-31T23:59:59-14:00", "00000000-0000-0000-0000-000000000000"]'),
        _b64(b'["0001-01-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000"]'),
        _b64(b'["9999-06-01T00:00:00+00:00", "00000000-0000-0000-0000-000000000000"]'),
        "A" * 5000,
    ],
)
def test_anything_else_is_an_invalid_input_naming_cursor(cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(cursor)
    assert caught.value.field == "cursor"
