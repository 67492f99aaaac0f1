"""Misfire coalescing and next-fire bookkeeping (pure domain)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from automation_schedule import parse_schedule
from automation_scheduler.domain.firing import (
    EXECUTION_NAMESPACE,
    default_parameters,
    execution_id_for,
    latest_at_or_before,
    plan_due,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Every:
    """A hand-written fake schedule: anchor + k·interval, optionally ending."""

    anchor: datetime
    interval: timedelta
    end: datetime | None = None

    def next_after(self, after: datetime) -> datetime | None:
        if after < self.anchor:
            found = self.anchor
        else:
            found = self.anchor + ((after - self.anchor) // self.interval + 1) * self.interval
        return None if self.end is not None and found > self.end else found


def test_nothing_due_keeps_the_next_fire_time() -> None:
    plan = plan_due(Every(T0, timedelta(seconds=1)), T0 + timedelta(seconds=5), T0, max_missed_records=10)
    assert plan.fire is None
    assert plan.missed == ()
    assert plan.next_fire_at == T0 + timedelta(seconds=5)


def test_one_due_slot_fires_and_advances_to_the_next() -> None:
    sched = Every(T0, timedelta(seconds=1))
    plan = plan_due(sched, T0 + timedelta(seconds=3), T0 + timedelta(seconds=3, milliseconds=2), max_missed_records=10)
    assert plan.fire == T0 + timedelta(seconds=3)
    assert plan.missed == ()
    assert not plan.truncated
    assert plan.next_fire_at == T0 + timedelta(seconds=4)


def test_due_exactly_now_fires() -> None:
    sched = Every(T0, timedelta(minutes=1))
    plan = plan_due(sched, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), max_missed_records=10)
    assert plan.fire == T0 + timedelta(minutes=1)


def test_downtime_coalesces_into_the_latest_due_slot() -> None:
    sched = Every(T0, timedelta(seconds=10))
    now = T0 + timedelta(seconds=45)
    plan = plan_due(sched, T0 + timedelta(seconds=10), now, max_missed_records=100)
    assert plan.fire == T0 + timedelta(seconds=40)
    assert plan.missed == tuple(T0 + timedelta(seconds=s) for s in (10, 20, 30))
    assert not plan.truncated
    assert plan.next_fire_at == T0 + timedelta(seconds=50)
    assert plan.next_fire_at > now


def test_long_downtime_truncates_the_missed_record_and_still_fires_the_latest() -> None:
    sched = Every(T0, timedelta(seconds=1))
    now = T0 + timedelta(days=7, milliseconds=500)
    plan = plan_due(sched, T0 + timedelta(seconds=1), now, max_missed_records=5)
    assert plan.fire == T0 + timedelta(days=7)
    assert plan.missed == tuple(T0 + timedelta(seconds=s) for s in range(1, 6))
    assert plan.truncated
    assert plan.next_fire_at == T0 + timedelta(days=7, seconds=1)


def test_zero_missed_records_records_nothing_but_says_so() -> None:
    sched = Every(T0, timedelta(seconds=1))
    plan = plan_due(sched, T0 + timedelta(seconds=1), T0 + timedelta(seconds=3), max_missed_records=0)
    assert plan.fire == T0 + timedelta(seconds=3)
    assert plan.missed == ()
    assert plan.truncated


def test_exactly_the_limit_of_missed_slots_is_not_truncated() -> None:
    sched = Every(T0, timedelta(seconds=1))
    plan = plan_due(sched, T0 + timedelta(seconds=1), T0 + timedelta(seconds=4), max_missed_records=3)
    assert plan.missed == tuple(T0 + timedelta(seconds=s) for s in (1, 2, 3))
    assert plan.fire == T0 + timedelta(seconds=4)
    assert not plan.truncated


def test_a_schedule_that_ends_has_no_next_fire_after_its_last() -> None:
    sched = Every(T0, timedelta(seconds=1), end=T0 + timedelta(seconds=2))
    plan = plan_due(sched, T0 + timedelta(seconds=1), T0 + timedelta(seconds=9), max_missed_records=10)
    assert plan.fire == T0 + timedelta(seconds=2)
    assert plan.missed == (T0 + timedelta(seconds=1),)
    assert plan.next_fire_at is None


@pytest.mark.parametrize(
    ("expression", "timezone", "span"),
    [
        ("*/7 * * * *", "UTC", timedelta(days=3, minutes=5, seconds=3)),
        ("0 9 * * 1-5", "Europe/Berlin", timedelta(days=40, hours=3)),
        ("30 2 * * *", "America/New_York", timedelta(days=400)),
        ("@every 90s", "UTC", timedelta(hours=5, seconds=17)),
    ],
)
def test_bisection_finds_the_same_latest_slot_as_enumeration(expression: str, timezone: str, span: timedelta) -> None:
    sched = parse_schedule(expression, timezone=timezone, anchor=T0)
    first = sched.next_after(T0)
    assert first is not None
    now = first + span
    latest = first
    while (following := sched.next_after(latest)) is not None and following <= now:
        latest = following
    assert latest_at_or_before(sched, first, now) == latest
    plan = plan_due(sched, first, now, max_missed_records=3)
    assert plan.fire == latest
    assert plan.next_fire_at == sched.next_after(latest)


def test_latest_at_or_before_rejects_a_slot_after_now() -> None:
    with pytest.raises(ValueError, match="after now"):
        latest_at_or_before(Every(T0, timedelta(seconds=1)), T0 + timedelta(seconds=2), T0)


def test_execution_id_is_uuid5_of_job_and_nominal_time() -> None:
    job_id = uuid.UUID("0b9b6f0e-8a7c-4c1e-9a51-0f6b2b7c1d11")
    expected = uuid.uuid5(EXECUTION_NAMESPACE, f"{job_id}:2026-11-23T12:00:00+00:00")
    assert execution_id_for(job_id, T0) == expected
    # the same instant in another offset is the same slot
    berlin = T0.astimezone(ZoneInfo("Europe/Berlin"))
    assert execution_id_for(job_id, berlin) == expected
    assert execution_id_for(job_id, T0 + timedelta(seconds=1)) != expected
    assert uuid.UUID("5f1c1a52-7c1e-4d43-9a3e-3b7f4b1e2a60") == EXECUTION_NAMESPACE


def test_execution_id_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        execution_id_for(uuid.uuid4(), datetime(2026, 1, 1))


def test_default_parameters_come_from_the_schema_defaults() -> None:
    schema = {
        "type": "object",
        "properties": {
            "site": {"type": "string", "default": "fra1"},
            "count": {"type": "integer", "default": 0},
            "flag": {"type": "boolean"},
            "odd": "not a schema",
        },
    }
    assert default_parameters(schema) == {"site": "fra1", "count": 0}
    assert default_parameters({}) == {}
    assert default_parameters({"properties": []}) == {}
