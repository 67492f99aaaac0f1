"""Refusals as HTTP problems, and the validator cache."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automation_core.errors import Forbidden, InvalidInput
from automation_event_gateway.api.problems import PayloadTooLarge, UnsupportedMediaType, problem_for
from automation_event_gateway.db.tables import EventTypeRow
from automation_event_gateway.domain.errors import EventRejected, RejectReason
from automation_event_gateway.registry import ValidatorCache


@pytest.mark.parametrize(
    ("reason", "error_class", "status"),
    [
        (RejectReason.FORBIDDEN_TYPE, Forbidden, 403),
        (RejectReason.TOO_LARGE, PayloadTooLarge, 413),
        (RejectReason.UNSUPPORTED_MEDIA_TYPE, UnsupportedMediaType, 415),
        (RejectReason.INVALID_ENVELOPE, InvalidInput, 422),
        (RejectReason.INVALID_DATA, InvalidInput, 422),
        (RejectReason.MALFORMED, InvalidInput, 422),
        (RejectReason.UNSTORABLE, InvalidInput, 422),
    ],
)
def test_reasons_map_to_statuses(reason: RejectReason, error_class: type[Exception], status: int) -> None:
    problem = problem_for(EventRejected(reason, "bad", "type"))
    assert isinstance(problem, error_class)
    assert problem.status == status
    assert problem.field == "type"
    assert problem.detail == "type: bad"


def test_every_refusal_of_a_batch_is_listed() -> None:
    first = EventRejected(RejectReason.INVALID_ENVELOPE, "required", "0.type")
    second = EventRejected(RejectReason.INVALID_DATA, "too small", "2.data.items")
    problem = problem_for(EventRejected(first.reason, first.message, first.field, (first, second)))
    assert problem.field == "0.type"
    assert problem.errors == [
        {"field": "0.type", "message": "required", "reason": "invalid_envelope"},
        {"field": "2.data.items", "message": "too small", "reason": "invalid_data"},
    ]
    whole = problem_for(EventRejected(RejectReason.MALFORMED, "not JSON"))
    assert whole.field is None
    assert whole.errors is None


def row(version: int, schema: object) -> EventTypeRow:
    at = datetime(2026, 11, 23, tzinfo=UTC)
    return EventTypeRow(type="a.b", description=None, schema=schema, version=version, created_at=at, updated_at=at)


def test_validators_are_cached_per_version() -> None:
    cache = ValidatorCache(size=2)
    v1 = cache.get(row(1, {"type": "string"}))
    assert cache.get(row(1, {"type": "string"})) is v1
    v2 = cache.get(row(2, {"type": "integer"}))
    assert v2 is not v1
    assert v2.is_valid(3)
    assert not v2.is_valid("3")
    cache.get(row(3, True))
    assert cache.get(row(1, {"type": "string"})) is not v1, "the least recently used entry was dropped"
