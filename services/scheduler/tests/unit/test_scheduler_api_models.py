"""Request validation and cursors of the HTTP API (no app, no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from automation_core.errors import InvalidInput
from automation_scheduler.api import cursor
from automation_scheduler.api.schemas import PreviewIn


def test_preview_defaults() -> None:
    body = PreviewIn.model_validate({"schedule": "@daily"})
    assert (body.timezone, body.count, body.from_, body.job_id) == (None, 10, None, None)
    assert body.model_fields_set == {"schedule"}


def test_preview_takes_from_by_its_wire_name() -> None:
    body = PreviewIn.model_validate({"schedule": "@daily", "from": "2026-11-23T12:00:00Z"})
    assert body.from_ == datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"schedule": "@daily", "count": 0}, "count"),
        ({"schedule": "@daily", "count": 1001}, "count"),
        ({"schedule": ""}, "schedule"),
        ({"schedule": "@daily", "from": "2026-11-23T12:00:00"}, "from"),
        ({"schedule": "@daily", "extra": 1}, "extra"),
    ],
)
def test_preview_rejects(payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        PreviewIn.model_validate(payload)
    assert info.value.errors()[0]["loc"] == (field,)


def test_cursors_round_trip() -> None:
    job_id = uuid.uuid4()
    assert cursor.decode_uuid(cursor.encode(str(job_id))) == job_id
    when = datetime(2026, 11, 23, 12, 0, 1, 5, tzinfo=UTC)
    assert cursor.decode_pair(cursor.encode_pair(when, "backfill")) == (when, "backfill")
    assert cursor.decode_pair(cursor.encode_pair(when, "a|b")) == (when, "a|b")
    assert cursor.decode_uuid(None) is None
    assert cursor.decode_pair(None) is None


@pytest.mark.parametrize("bad", ["!!!", cursor.encode("not-a-uuid")])
def test_foreign_schedule_cursors_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        cursor.decode_uuid(bad)
    assert info.value.field == "cursor"


@pytest.mark.parametrize(
    "bad",
    [
        "!!!",
        cursor.encode("yesterday|schedule"),
        cursor.encode("2026-11-23T12:00:00|schedule"),
        cursor.encode("2026-11-23T12:00:00+00:00"),
    ],
)
def test_foreign_fire_cursors_are_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        cursor.decode_pair(bad)
    assert info.value.field == "cursor"
