"""The default misfire policy (run_once: coalescing), bisection, and run identities (pure domain)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from automation_contracts import ContractError
from automation_schedule import parse_schedule
from automation_scheduler.domain.firing import (
    EXECUTION_NAMESPACE,
    backfill_execution_id,
    default_parameters,
    event_execution_id,
    event_parameters,
    execution_id_for,
)
from automation_scheduler.domain.policies import FirePolicy, RowPlan, latest_at_or_before, plan_row

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


RUN_ONCE = FirePolicy()


def plan(sched: Every, first: datetime, now: datetime, *, records: int = 10) -> RowPlan:
    return plan_row(sched, first, now, RUN_ONCE, max_records=records)


def outcomes(p: RowPlan) -> list[tuple[datetime, str]]:
    return [(slot.nominal, slot.outcome) for slot in p.slots]


def test_nothing_due_keeps_the_next_fire_time() -> None:
    p = plan(Every(T0, timedelta(seconds=1)), T0 + timedelta(seconds=5), T0)
    assert p.slots == ()
    assert p.next_nominal == T0 + timedelta(seconds=5)


def test_one_due_slot_fires_and_advances_to_the_next() -> None:
    sched = Every(T0, timedelta(seconds=1))
    p = plan(sched, T0 + timedelta(seconds=3), T0 + timedelta(seconds=3, milliseconds=2))
    assert outcomes(p) == [(T0 + timedelta(seconds=3), "fired")]
    assert not p.unrecorded
    assert not p.completed
    assert p.next_nominal == T0 + timedelta(seconds=4)


def test_due_exactly_now_fires() -> None:
    sched = Every(T0, timedelta(minutes=1))
    p = plan(sched, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1))
    assert p.fired == (T0 + timedelta(minutes=1),)


def test_downtime_coalesces_into_the_latest_due_slot() -> None:
    sched = Every(T0, timedelta(seconds=10))
    now = T0 + timedelta(seconds=45)
    p = plan(sched, T0 + timedelta(seconds=10), now, records=100)
    assert outcomes(p) == [
        (T0 + timedelta(seconds=10), "coalesced"),
        (T0 + timedelta(seconds=20), "coalesced"),
        (T0 + timedelta(seconds=30), "coalesced"),
        (T0 + timedelta(seconds=40), "fired"),
    ]
    assert not p.unrecorded
    assert p.next_nominal == T0 + timedelta(seconds=50)


def test_long_downtime_truncates_the_record_and_still_fires_the_latest() -> None:
    sched = Every(T0, timedelta(seconds=1))
    now = T0 + timedelta(days=7, milliseconds=500)
    p = plan(sched, T0 + timedelta(seconds=1), now, records=5)
    assert p.fired == (T0 + timedelta(days=7),)
    assert [s.nominal for s in p.slots if s.outcome == "coalesced"] == [T0 + timedelta(seconds=s) for s in range(1, 6)]
    assert p.unrecorded
    assert p.next_nominal == T0 + timedelta(days=7, seconds=1)


def test_zero_records_records_nothing_but_says_so() -> None:
    sched = Every(T0, timedelta(seconds=1))
    p = plan(sched, T0 + timedelta(seconds=1), T0 + timedelta(seconds=3), records=0)
    assert outcomes(p) == [(T0 + timedelta(seconds=3), "fired")]
    assert p.unrecorded


def test_exactly_the_limit_of_older_slots_is_not_truncated() -> None:
    sched = Every(T0, timedelta(seconds=1))
    p = plan(sched, T0 + timedelta(seconds=1), T0 + timedelta(seconds=4), records=3)
    assert [s.nominal for s in p.slots if s.outcome == "coalesced"] == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]
    assert p.fired == (T0 + timedelta(seconds=4),)
    assert not p.unrecorded


def test_a_schedule_that_ends_completes_after_its_last() -> None:
    sched = Every(T0, timedelta(seconds=1), end=T0 + timedelta(seconds=2))
    p = plan(sched, T0 + timedelta(seconds=1), T0 + timedelta(seconds=9))
    assert outcomes(p) == [(T0 + timedelta(seconds=1), "coalesced"), (T0 + timedelta(seconds=2), "fired")]
    assert p.next_nominal is None
    assert p.completed


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
    p = plan_row(sched, first, now, RUN_ONCE, max_records=3)
    assert p.fired == (latest,)
    assert p.next_nominal == sched.next_after(latest)


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
    nested = {
        "type": "object",
        "properties": {"t": {"type": "object", "default": {}, "properties": {"p": {"default": 22}}}},
    }
    assert default_parameters(nested) == {"t": {"p": 22}}
    for bad, path in (
        ({"properties": []}, "parameters.properties"),
        (
            {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "parameters.properties.n.default",
        ),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "default": "1"}}},
            "parameters.properties.n.default",
        ),
    ):
        with pytest.raises(ContractError) as caught:
            default_parameters(bad)
        assert caught.value.path == path


def test_an_event_runs_with_the_declared_parameters_its_data_gives() -> None:
    schema = {
        "type": "object",
        "properties": {"site": {"type": "string"}, "dry_run": {"type": "boolean", "default": True}},
        "required": ["site"],
        "additionalProperties": False,
    }
    data = {"site": "fra1", "items": 3}  # items is not a parameter: it stays event.data.items
    assert event_parameters(schema, data) == {"site": "fra1", "dry_run": True}
    assert event_parameters(schema, {"site": "ams2", "dry_run": False}) == {"site": "ams2", "dry_run": False}
    assert event_parameters({"type": "object"}, {"site": "x"}) == {}
    for bad, path in (({"site": 5}, "parameters.site"), ({"items": 3}, "parameters.site"), ("text", "parameters.site")):
        with pytest.raises(ContractError) as caught:
            event_parameters(schema, bad)
        assert caught.value.path == path


def test_backfill_and_event_runs_have_their_own_deterministic_ids() -> None:
    job_id = uuid.UUID("0b9b6f0e-8a7c-4c1e-9a51-0f6b2b7c1d11")
    backfill = backfill_execution_id(job_id, T0)
    assert backfill == uuid.uuid5(EXECUTION_NAMESPACE, f"{job_id}:2026-11-23T12:00:00+00:00:backfill")
    assert backfill != execution_id_for(job_id, T0)
    assert backfill_execution_id(job_id, T0.astimezone(ZoneInfo("Asia/Tokyo"))) == backfill
    event = event_execution_id(job_id, "evt-1")
    assert event == uuid.uuid5(EXECUTION_NAMESPACE, f"{job_id}:event:evt-1")
    assert event_execution_id(job_id, "evt-2") != event
    assert event_execution_id(uuid.uuid4(), "evt-1") != event
