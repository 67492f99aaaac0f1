"""History filters, cursors and the metric label cap."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from automation_event_gateway.domain.cursor import (
    EventCursor,
    decode_name_cursor,
    encode_name_cursor,
)
from automation_event_gateway.domain.query import InvalidQuery, parse_filter
from automation_event_gateway.metrics import OTHER_TYPE, type_label


def test_filters_parse() -> None:
    where = parse_filter(
        type="job.*", source="/s", subject="x", since="2026-11-23T12:00:00Z", until="2026-11-23T14:00:00+01:00"
    )
    assert where.type is not None
    assert not where.type.is_exact
    assert where.since == datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert where.until == datetime(2026, 11, 23, 14, tzinfo=timezone(timedelta(hours=1)))
    assert parse_filter() == parse_filter(type=None)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"type": "a..b"}, "type"),
        ({"type": "a.b*"}, "type"),
        ({"since": "2026-11-23"}, "since"),
        ({"since": "2026-11-23T12:00:00"}, "since"),
        ({"until": "soon"}, "until"),
        ({"since": "2026-11-23T12:00:00Z", "until": "2026-11-23T11:00:00Z"}, "until"),
        # valid RFC 3339 whose UTC value is outside the platform's range
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-14:00"}, "until"),
        ({"since": "0001-01-01T00:00:00Z"}, "since"),
    ],
)
def test_bad_filters_name_the_parameter(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_filter(**kwargs)
    assert info.value.field == field


def test_cursors_round_trip() -> None:
    cursor = EventCursor(datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    assert EventCursor.decode(cursor.encode()) == cursor
    assert decode_name_cursor(encode_name_cursor("inventory.synced")) == "inventory.synced"


@pytest.mark.parametrize(
    "text", ["", "!!!", "bm90IGpzb24", "WzFd", "WyIyMDI2LTExLTIzVDEyOjAwOjAwIiwgIngiXQ", "WzEsMl0"]
)
def test_foreign_cursors_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        EventCursor.decode(text)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000,  # RecursionError in the JSON parser
        b'["0001-01-01T00:00:00+14:00","00000000-0000-0000-0000-000000000000"]',
        b'["9999-12-31T23:59:59-14:00","00000000-0000-0000-0000-000000000000"]',
        b'["2026-01-01T00:00:00+00:00\x00","00000000-0000-0000-0000-000000000000"]',
    ],
)
def test_cursors_too_deep_out_of_range_or_with_nul_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="cursor"):
        EventCursor.decode(_b64(raw))


@pytest.mark.parametrize("raw", [b"\x00", b"inventory.\x00", b"\xff"])
def test_name_cursors_with_nul_or_not_utf8_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_name_cursor(_b64(raw))


def test_metric_type_label_is_capped() -> None:
    assert type_label("job.created", set()) == "job.created"
    assert type_label("inventory.synced", {"inventory.synced"}) == "inventory.synced"
    assert type_label("inventory.synced", set()) == OTHER_TYPE
    assert type_label("random.user.type", {"inventory.synced"}) == OTHER_TYPE
