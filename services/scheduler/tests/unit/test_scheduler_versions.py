"""Version idempotency and state rules for job changes (pure domain)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from automation_scheduler.domain.schedules import (
    IncomingVersion,
    ScheduleState,
    StoredSchedule,
    is_newer,
    plan_change,
    state_for,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1, seconds=30, milliseconds=250)


@dataclass(frozen=True)
class EveryMinute:
    anchor: datetime

    def next_after(self, after: datetime) -> datetime | None:
        step = timedelta(minutes=1)
        return self.anchor + ((after - self.anchor) // step + 1) * step


def stored(
    version: int = 3, *, state: ScheduleState = "active", expression: str | None = "@every 1m"
) -> StoredSchedule:
    return StoredSchedule(
        job_version=version,
        expression=expression,
        timezone="UTC",
        anchor=T0,
        state=state,
        next_fire_at=T0 + timedelta(hours=1, minutes=1) if state == "active" else None,
    )


def incoming(version: int, **kw: object) -> IncomingVersion:
    values: dict[str, object] = {"expression": "@every 1m", "enabled": True, "changed_at": T0 + timedelta(hours=1)}
    values.update(kw)
    return IncomingVersion(version=version, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored_version", "incoming_version", "newer"), [(None, 1, True), (3, 4, True), (3, 3, False), (3, 2, False)]
)
def test_only_a_strictly_newer_version_supersedes(
    stored_version: int | None, incoming_version: int, newer: bool
) -> None:
    assert is_newer(stored_version, incoming_version) is newer


@pytest.mark.parametrize("version", [1, 2, 3])
def test_stale_and_repeated_versions_are_ignored(version: int) -> None:
    assert plan_change(stored(3), incoming(version, expression="* * * * *")) is None


def test_stale_version_is_ignored_even_after_a_delete() -> None:
    assert plan_change(stored(5, state="deleted"), incoming(1)) is None


@pytest.mark.parametrize(
    ("kw", "state"),
    [
        ({"deleted": True}, "deleted"),
        ({"expression": None}, "no_schedule"),
        ({"expression": None, "enabled": False}, "no_schedule"),
        ({"enabled": False}, "paused"),
        ({}, "active"),
    ],
)
def test_state_follows_the_job(kw: dict[str, object], state: str) -> None:
    assert state_for(incoming(1, **kw)) == state


def test_first_version_anchors_at_its_change_time_and_schedules_from_now() -> None:
    change = plan_change(None, incoming(1, changed_at=T0))
    assert change is not None
    assert change.anchor == T0
    assert change.reschedule
    assert change.next_fire_at(None, EveryMinute(T0), NOW) == T0 + timedelta(hours=1, minutes=1)


def test_the_anchor_is_kept_across_updates() -> None:
    change = plan_change(stored(3), incoming(4, expression="@every 5m", changed_at=T0 + timedelta(days=2)))
    assert change is not None
    assert change.anchor == T0


def test_a_timing_change_recomputes_from_now_not_from_the_old_fire_time() -> None:
    old = stored(3)
    change = plan_change(old, incoming(4, expression="@every 1m", timezone="Europe/Berlin"))
    assert change is not None
    assert change.reschedule
    assert change.next_fire_at(old, EveryMinute(T0), NOW) == T0 + timedelta(hours=1, minutes=1)
    change = plan_change(old, incoming(4, expression="*/2 * * * *"))
    assert change is not None
    assert change.reschedule


def test_an_edit_that_keeps_the_timing_keeps_the_next_fire_time() -> None:
    old = stored(3)
    change = plan_change(old, incoming(4))
    assert change is not None
    assert not change.reschedule
    assert change.next_fire_at(old, None, NOW) == old.next_fire_at


def test_resuming_a_paused_job_recomputes_from_now() -> None:
    old = stored(3, state="paused")
    change = plan_change(old, incoming(4))
    assert change is not None
    assert change.state == "active"
    assert change.reschedule
    assert change.next_fire_at(old, EveryMinute(T0), NOW) == T0 + timedelta(hours=1, minutes=1)


@pytest.mark.parametrize("kw", [{"enabled": False}, {"expression": None}, {"deleted": True}])
def test_leaving_active_clears_the_next_fire_time(kw: dict[str, object]) -> None:
    old = stored(3)
    change = plan_change(old, incoming(4, **kw))
    assert change is not None
    assert change.state != "active"
    assert change.next_fire_at(old, None, NOW) is None


def test_a_delete_of_an_unseen_job_is_a_tombstone_anchored_at_the_delete() -> None:
    change = plan_change(None, incoming(7, deleted=True, changed_at=T0))
    assert change is not None
    assert change.state == "deleted"
    assert change.anchor == T0
    assert change.next_fire_at(None, None, NOW) is None


def test_an_active_reschedule_needs_the_parsed_schedule() -> None:
    change = plan_change(None, incoming(1))
    assert change is not None
    with pytest.raises(ValueError, match="parsed"):
        change.next_fire_at(None, None, NOW)
