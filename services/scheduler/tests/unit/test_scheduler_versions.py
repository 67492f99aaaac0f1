"""Version idempotency and state rules for job changes (pure domain)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from automation_scheduler.domain.schedules import (
    DEFAULT_TIMING,
    IncomingVersion,
    PauseBookkeeping,
    ScheduleState,
    StoredSchedule,
    Timing,
    is_newer,
    pause_bookkeeping,
    plan_change,
    settle_state,
    state_for,
    timing_of,
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


@pytest.mark.parametrize(
    "timing",
    [
        ("2026-12-01T00:00:00Z", None, "shift", "first", 0.0),
        (None, "2027-01-01T00:00:00Z", "shift", "first", 0.0),
        (None, None, "skip", "first", 0.0),
        (None, None, "shift", "both", 0.0),
        (None, None, "shift", "first", 30.0),
    ],
)
def test_a_window_dst_or_jitter_change_is_a_timing_change(timing: Timing) -> None:
    change = plan_change(stored(3), incoming(4, timing=timing))
    assert change is not None
    assert change.reschedule


def test_timing_of_reads_a_spec_document_and_defaults_older_ones() -> None:
    assert timing_of(None) == DEFAULT_TIMING
    assert timing_of({"name": "old spec without the fields"}) == DEFAULT_TIMING
    spec = {"start_at": "2026-12-01T00:00:00Z", "dst_gap": "skip", "dst_overlap": "last", "jitter_seconds": 5}
    assert timing_of(spec) == ("2026-12-01T00:00:00Z", None, "skip", "last", 5.0)


def test_the_next_due_time_adds_the_jitter_to_the_next_nominal_slot() -> None:
    change = plan_change(None, incoming(1, changed_at=T0))
    assert change is not None
    offset = timedelta(seconds=20)
    # now - offset = 13:00:10.25: the next slot is 13:01, due at 13:01:20 (not 13:02: it is still ahead)
    assert change.next_fire_at(None, EveryMinute(T0), NOW, offset) == T0 + timedelta(hours=1, minutes=1) + offset
    # Created at 13:01:10.25: the 13:01 slot (due 13:01:20, still ahead) came before the job existed, so
    # its first slot is 13:02, as the preview from its creation says (it was 13:01, found by hand).
    late = NOW + timedelta(seconds=40)
    assert change.next_fire_at(None, EveryMinute(T0), late, offset) == T0 + timedelta(hours=1, minutes=2) + offset


def test_an_edit_neither_decides_a_slot_again_nor_skips_one() -> None:
    """Found by hand (``* * * * * *``): lowering the jitter skipped the slots in between, raising it, or
    an edit or a re-enable just before a slot the fire loop had decided ahead, decided slots again and
    counted them towards ``max_runs`` twice."""
    from dataclasses import replace

    from automation_scheduler.domain.schedules import first_undecided

    old_offset, new_offset = timedelta(seconds=22), timedelta(0)
    stored_row = replace(
        stored(3), next_fire_at=T0 + old_offset, offset=old_offset, last_fire_at=T0 - timedelta(minutes=1)
    )
    change = plan_change(stored_row, incoming(4, timing=(None, None, "shift", "first", 30.0)))  # jitter changed
    assert change is not None
    assert change.reschedule
    now = T0 + timedelta(seconds=20)  # the 13:00 slot, due 13:00:22, is not decided yet
    assert first_undecided(stored_row, now, new_offset) == T0, "not now - 0 s: the 13:00 slot is not skipped"
    assert change.next_fire_at(stored_row, EveryMinute(T0), now, new_offset) == T0, "due at once, late"
    raised = timedelta(seconds=50)
    assert change.next_fire_at(stored_row, EveryMinute(T0), now, raised) == T0 + raised
    decided_ahead = replace(stored_row, next_fire_at=T0 + timedelta(minutes=1) + old_offset, last_fire_at=T0)
    assert change.next_fire_at(decided_ahead, EveryMinute(T0), now, raised) == T0 + timedelta(minutes=1) + raised
    resumed = replace(decided_ahead, state="paused", next_fire_at=None)  # paused, then enabled just before
    back = plan_change(resumed, incoming(5))
    assert back is not None
    assert back.next_fire_at(resumed, EveryMinute(T0), T0 - timedelta(seconds=1), new_offset) == T0 + timedelta(
        minutes=1
    ), "the 13:00 slot fired already"


@pytest.mark.parametrize(
    ("state", "next_fire", "runs", "max_runs", "settled"),
    [
        ("active", T0, 0, None, "active"),
        ("active", None, 0, None, "completed"),
        ("active", T0, 3, 3, "completed"),
        ("active", T0, 2, 3, "active"),
        ("paused", None, 5, 3, "paused"),
        ("no_schedule", None, 0, None, "no_schedule"),
        ("deleted", None, 0, None, "deleted"),
    ],
)
def test_settle_state(
    state: ScheduleState, next_fire: datetime | None, runs: int, max_runs: int | None, settled: str
) -> None:
    assert settle_state(state, next_fire, runs, max_runs) == settled


def test_pausing_remembers_the_first_held_slot_and_resuming_hands_it_back() -> None:
    active = replace(stored(3), offset=timedelta(seconds=7))
    assert active.next_fire_at is not None
    paused = pause_bookkeeping(active, "paused")
    assert paused == PauseBookkeeping(paused_from=active.next_fire_at - timedelta(seconds=7), resumed_from=None)
    still = replace(stored(4, state="paused"), paused_from=paused.paused_from)
    assert pause_bookkeeping(still, "paused") == PauseBookkeeping(paused.paused_from, None)
    assert pause_bookkeeping(still, "active") == PauseBookkeeping(None, paused.paused_from)
    assert pause_bookkeeping(still, "deleted") == PauseBookkeeping(None, None)
    assert pause_bookkeeping(None, "paused") == PauseBookkeeping(None, None)
    assert pause_bookkeeping(stored(3, state="no_schedule"), "paused") == PauseBookkeeping(None, None)
