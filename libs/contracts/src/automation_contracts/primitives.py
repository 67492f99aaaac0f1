"""Field types and the model base shared by every contract model.

The models must accept exactly what the JSON Schemas accept, so the checks here reuse jsonschema's
format checker (for a UUID, its rule applied directly): a UUID must be the hyphenated text form, a
timestamp RFC 3339 with an offset (and, once converted to UTC, between :data:`EARLIEST_INSTANT` and
:data:`LATEST_INSTANT`: see :func:`check_instant`), a URI absolute. Models are strict, as JSON Schema is: no "5" for
5, no 0/1 for booleans (stricter in one corner: an integer field refuses 5.0, which JSON Schema
would take).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from jsonschema import Draft202012Validator
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, TypeAdapter

_FORMATS = Draft202012Validator.FORMAT_CHECKER
_AWARE_DATETIME: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def conforms(value: str, fmt: str) -> bool:
    """Whether ``value`` has the JSON Schema ``fmt`` (uuid, date-time, uri, uri-reference)."""
    return bool(_FORMATS.conforms(value, fmt))


_UUID_HYPHENS = (8, 13, 18, 23)


def _uuid(value: Any) -> Any:
    # jsonschema's own "uuid" rule (``is_uuid``: ``UUID()`` takes the text, and hyphens stand at 8, 13,
    # 18 and 23), applied once: through the format checker the text was parsed twice, and the checker's
    # dispatch cost as much again (2.8 -> 1.5 us per UUID; every message carries several).
    # tests/unit/test_primitives.py holds the two to the same answers.
    if isinstance(value, str):
        try:
            parsed = UUID(value)
        except ValueError:
            parsed = None
        if parsed is None or not all(value[position] == "-" for position in _UUID_HYPHENS):
            raise ValueError("must be a UUID in its hyphenated text form")
        return parsed
    return value


def _timestamp(value: Any) -> Any:
    if isinstance(value, str):
        if not conforms(value, "date-time"):
            raise ValueError("must be an RFC 3339 date-time with a UTC offset")
        return _AWARE_DATETIME.validate_python(value)
    return value


EARLIEST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
"""The earliest instant the platform takes (``0001-01-02T00:00:00Z``)."""
LATEST_INSTANT = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""The latest instant the platform takes (``9998-12-31T23:59:59.999999Z``)."""
INSTANT_RANGE_TEXT = "from 0001-01-02T00:00:00Z to 9998-12-31T23:59:59.999999Z"


def check_instant(value: datetime) -> datetime:
    """``value`` itself when it is timezone-aware and its UTC value lies in
    [:data:`EARLIEST_INSTANT`, :data:`LATEST_INSTANT`]; ValueError otherwise.

    Python's datetimes (and PostgreSQL's as asyncpg sends them) span years 1 to 9999 in UTC, so valid
    RFC 3339 text such as ``0001-01-01T00:00:00+14:00`` or ``9999-12-31T23:59:59-14:00`` has no UTC
    value at all, and one at the very ends leaves no room for the arithmetic done with it (a time zone's
    local time, the next fire time of a schedule, a jitter or a deadline added). The range keeps a day at
    the start (any time zone's local time still exists) and a year at the end (a yearly schedule's
    next fire is still found). Every API model field, query parameter and cursor that takes an instant
    goes through this, so that such input is a 422 naming the field instead of an error later on.
    """
    if value.utcoffset() is None:
        raise ValueError("must be timezone-aware (carry a UTC offset)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_INSTANT <= utc <= LATEST_INSTANT:
        raise ValueError(f"must lie {INSTANT_RANGE_TEXT} once converted to UTC")
    return value


def _uri(value: str) -> str:
    if not conforms(value, "uri"):
        raise ValueError("must be an absolute URI")
    return value


def _uri_reference(value: str) -> str:
    if not conforms(value, "uri-reference"):
        raise ValueError("must be a URI-reference")
    return value


Uuid = Annotated[UUID, BeforeValidator(_uuid)]
"""A UUID, given as a UUID or its hyphenated text."""

Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp), AfterValidator(check_instant)]
"""A timezone-aware datetime, given as one or as RFC 3339 text with an offset; naive ones are refused, and
so are those outside the platform's range (:func:`check_instant`)."""

Instant = Annotated[AwareDatetime, AfterValidator(check_instant)]
"""A timezone-aware datetime in the platform's range (:func:`check_instant`), parsed as pydantic parses
an ``AwareDatetime``: the type of the instants the HTTP APIs take (query parameters, request bodies)."""

Uri = Annotated[str, AfterValidator(_uri)]
"""An absolute URI (RFC 3986), kept as text."""

UriReference = Annotated[str, AfterValidator(_uri_reference)]
"""A URI or relative reference (RFC 3986), kept as text."""

JsonObject = dict[str, Any]
"""A free-form JSON object."""


class Contract(BaseModel):
    """Base of the message models: strict, immutable, and closed to unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
