"""The history listing's filters, parsed from query parameters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError

from automation_contracts.primitives import Instant
from automation_event_gateway.domain.routing import TopicPattern

_AWARE: TypeAdapter[datetime] = TypeAdapter(Instant)
_FORMATS = Draft202012Validator.FORMAT_CHECKER


class InvalidQuery(ValueError):
    """A query parameter is wrong; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters of the history listing; ``since`` is inclusive, ``until`` exclusive (both on ``received_at``)."""

    type: TopicPattern | None = None
    source: str | None = None
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_rfc3339(value: str, field: str) -> datetime:
    """An RFC 3339 date-time with an offset (``2026-11-23T12:00:00Z``) in the platform's range
    (:func:`automation_contracts.primitives.check_instant`); InvalidQuery otherwise."""
    if not _FORMATS.conforms(value, "date-time"):
        raise InvalidQuery("must be an RFC 3339 date-time with an offset, e.g. 2026-11-23T12:00:00Z", field)
    try:
        return _AWARE.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidQuery(reason, field) from exc


def parse_filter(
    *,
    type: str | None = None,
    source: str | None = None,
    subject: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> EventFilter:
    """Build the filter; InvalidQuery naming the parameter at fault."""
    pattern: TopicPattern | None = None
    if type is not None:
        try:
            pattern = TopicPattern.parse(type)
        except ValueError as exc:
            raise InvalidQuery(str(exc), "type") from exc
    since_at = parse_rfc3339(since, "since") if since is not None else None
    until_at = parse_rfc3339(until, "until") if until is not None else None
    if since_at is not None and until_at is not None and until_at <= since_at:
        raise InvalidQuery("must be later than since", "until")
    return EventFilter(pattern, source, subject, since_at, until_at)
