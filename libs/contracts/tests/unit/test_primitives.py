"""The contract models' field types accept exactly what the JSON Schema formats accept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from automation_contracts.primitives import (
    EARLIEST_INSTANT,
    LATEST_INSTANT,
    Contract,
    Instant,
    Timestamp,
    Uuid,
    check_instant,
)

CHECKER = Draft202012Validator.FORMAT_CHECKER
GOOD = "0b8f3e2a-5c1d-4e6f-9a7b-2c3d4e5f6a7b"

UUID_TEXTS = [
    GOOD,
    GOOD.upper(),
    str(uuid.UUID(int=0)),
    GOOD.replace("-", ""),  # UUID() takes it; the hyphenated form is required
    "{" + GOOD + "}",
    "urn:uuid:" + GOOD,
    GOOD[:-1],
    GOOD + "0",
    GOOD[:8] + "-" + GOOD[8:],  # a hyphen too many
    # four hyphens in the wrong places (the last group split instead of the first):
    GOOD[:8] + GOOD[9:13] + "-" + GOOD[14:18] + "-" + GOOD[19:23] + "-" + GOOD[24:28] + "-" + GOOD[28:],
    GOOD[:-2] + "-" + GOOD[-2:],  # a fifth hyphen after the four: both take it (UUID() drops hyphens)
    GOOD.replace("a", "g"),
    "",
    "-" * 36,
    " " + GOOD,
    GOOD + "\n",
    GOOD.replace("-", "_"),
    GOOD[:-1] + "\u0661",  # an Arabic-Indic digit: int(..., 16) takes it, and so both do
]


class _Model(Contract):
    id: Uuid


@pytest.mark.parametrize("text", UUID_TEXTS)
def test_a_uuid_is_taken_exactly_when_the_schema_format_takes_it(text: str) -> None:
    if CHECKER.conforms(text, "uuid"):
        assert _Model.model_validate({"id": text}).id == uuid.UUID(text)
    else:
        with pytest.raises(ValidationError, match="must be a UUID in its hyphenated text form"):
            _Model.model_validate({"id": text})


def test_a_uuid_object_passes_through() -> None:
    value = uuid.uuid4()
    assert _Model.model_validate({"id": value}).id is value


class _Timed(Contract):
    at: Timestamp


class _Request(BaseModel):
    at: Instant


IN_RANGE = [
    "0001-01-02T00:00:00Z",
    "0001-01-02T14:00:00+14:00",  # 0001-01-02T00:00:00Z
    "2026-11-23T12:00:00.123456+01:00",
    "9998-12-31T23:59:59.999999Z",
    "9998-12-31T13:59:59.999999-10:00",  # 9998-12-31T23:59:59.999999Z
]
OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",  # no UTC value at all (year 0)
    "9999-12-31T23:59:59-14:00",  # no UTC value at all (year 10000)
    "0001-01-01T00:00:00Z",  # no room left for a time zone's local time
    "0001-01-01T23:59:59.999999Z",
    "0001-01-02T00:00:00+00:01",
    "9999-01-01T00:00:00Z",  # no room left for the next fire of a yearly schedule
    "9999-12-31T23:59:59.999999Z",
]


@pytest.mark.parametrize("text", IN_RANGE)
def test_instants_in_the_platform_range_are_taken(text: str) -> None:
    assert _Timed.model_validate({"at": text}).at == datetime.fromisoformat(text)
    assert _Request.model_validate({"at": text}).at == datetime.fromisoformat(text)
    assert check_instant(datetime.fromisoformat(text)) == datetime.fromisoformat(text)
    assert EARLIEST_INSTANT <= datetime.fromisoformat(text) <= LATEST_INSTANT


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_instants_outside_the_platform_range_are_refused(text: str) -> None:
    for model in (_Timed, _Request):
        with pytest.raises(ValidationError, match="once converted to UTC") as caught:
            model.model_validate({"at": text})
        assert caught.value.errors()[0]["loc"] == ("at",)
    with pytest.raises(ValueError, match=r"from 0001-01-02T00:00:00Z to 9998-12-31T23:59:59.999999Z"):
        check_instant(datetime.fromisoformat(text))


def test_check_instant_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_instant(datetime(2026, 1, 1))
    assert check_instant(datetime.max.replace(year=2026, tzinfo=UTC)).year == 2026
