"""Field types and the model base shared by every contract model.

The models must accept exactly what the JSON Schemas accept, so the checks here reuse jsonschema's
format checker (for a UUID, its rule applied directly): a UUID must be the hyphenated text form, a
timestamp RFC 3339 with an offset, a URI absolute. Models are strict, as JSON Schema is: no "5" for
5, no 0/1 for booleans (stricter in one corner: an integer field refuses 5.0, which JSON Schema
would take).
"""

from __future__ import annotations

from datetime import datetime
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

Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp)]
"""A timezone-aware datetime, given as one or as RFC 3339 text with an offset; naive ones are refused."""

Uri = Annotated[str, AfterValidator(_uri)]
"""An absolute URI (RFC 3986), kept as text."""

UriReference = Annotated[str, AfterValidator(_uri_reference)]
"""A URI or relative reference (RFC 3986), kept as text."""

JsonObject = dict[str, Any]
"""A free-form JSON object."""


class Contract(BaseModel):
    """Base of the message models: strict, immutable, and closed to unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
