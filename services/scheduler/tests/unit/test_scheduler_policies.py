"""Misfire, starting deadline, overlap and max_runs policies on due slots (pure domain)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from automation_contracts import JobSpec
from automation_contracts.jobs import MisfirePolicy
from automation_core.errors import InvalidInput
from automation_schedule import parse_schedule
from automation_scheduler.backfill import window_slots
from automation_scheduler.domain.policies import (
    DueSlots,
    FirePolicy,
    RowPlan,
    collect_due,
    decide,
    plan_row,
    slots_between,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)
RUNNING = (uuid.UUID(int=1), uuid.UUID(int=2))


@dataclass(frozen=True)
class Every:
    """A hand-written fake schedule: anchor + k·interval."""

    anchor: datetime
    interval: timedelta

    def next_after(self, after: datetime) -> datetime | None:
        if after < self.anchor:
            return self.anchor
        return self.anchor + ((after - self.anchor) // self.interval + 1) * self.interval


EVERY_S = Every(T0, S)


def at(*seconds: float) -> list[datetime]:
    return [T0 + s * S for s in seconds]


def plan(now: float, *, first: float = 1, records: int = 100, **policy: object) -> RowPlan:
    return plan_row(EVERY_S, T0 + first * S, T0 + now * S, FirePolicy(**policy), max_records=records)  # type: ignore[arg-type]


def by_outcome(p: RowPlan) -> dict[str, list[datetime]]:
    found: dict[str, list[datetime]] = {}
    for slot in p.slots:
        found.setdefault(slot.outcome, []).append(slot.nominal)
    return found


def test_the_policy_is_read_from_the_spec() -> None:
    spec = JobSpec.model_validate(
        {
            "name": "n",
            "enabled": True,
            "timeout_seconds": 60,
            "retries": 0,
            "retry_backoff": {"base_seconds": 1, "max_seconds": 1},
            "priority": 0,
            "parameters": {},
            "steps": [{"name": "s", "type": "shell", "config": {}}],
            "misfire_policy": "run_all",
            "misfire_cap": 7,
            "starting_deadline_seconds": 30,
            "overlap_policy": "forbid",
            "max_runs": 3,
        }
    )
    assert FirePolicy.of(spec, timedelta(seconds=5)) == FirePolicy("run_all", 7, 30 * S, "forbid", 3, 5 * S)


# --- misfire ------------------------------------------------------------------------------------------


def test_skip_records_every_older_slot_missed_and_fires_a_timely_latest() -> None:
    p = plan(5.5, misfire="skip")
    assert by_outcome(p) == {"missed": at(1, 2, 3, 4), "fired": at(5)}
    assert all(s.reason == "misfire" for s in p.slots if s.outcome == "missed")
    assert p.next_nominal == T0 + 6 * S


def test_skip_fires_nothing_when_even_the_latest_is_past_the_threshold() -> None:
    p = plan(5.5, misfire="skip", threshold=timedelta(milliseconds=100))
    assert by_outcome(p) == {"missed": at(1, 2, 3, 4, 5)}
    assert p.next_nominal == T0 + 6 * S  # resumes at the next future slot
    assert not p.completed


def test_skip_on_time_is_an_ordinary_fire() -> None:
    assert by_outcome(plan(1.001, misfire="skip")) == {"fired": at(1)}


def test_run_once_coalesces_the_older_slots() -> None:
    assert by_outcome(plan(4.2)) == {"coalesced": at(1, 2, 3), "fired": at(4)}


def test_run_all_fires_every_due_slot_up_to_the_cap_newest_first_kept() -> None:
    p = plan(6.5, misfire="run_all", misfire_cap=4)
    assert by_outcome(p) == {"missed": at(1, 2), "fired": at(3, 4, 5, 6)}
    assert p.fired == tuple(at(3, 4, 5, 6))  # oldest first
    assert p.next_nominal == T0 + 7 * S


def test_run_all_within_the_cap_fires_them_all() -> None:
    assert by_outcome(plan(3, misfire="run_all")) == {"fired": at(1, 2, 3)}


def test_run_all_after_a_long_downtime_stays_bounded_and_exact() -> None:
    p = plan(86_400.5, misfire="run_all", misfire_cap=3, records=2)
    assert by_outcome(p) == {"missed": at(1, 2), "fired": at(86_398, 86_399, 86_400)}
    assert p.unrecorded
    assert p.next_nominal == T0 + 86_401 * S


# --- starting deadline --------------------------------------------------------------------------------


def test_a_fire_later_than_its_deadline_is_dropped() -> None:
    p = plan(1.5, deadline=timedelta(milliseconds=200))
    assert [(s.outcome, s.reason) for s in p.slots] == [("dropped", "deadline")]
    assert p.next_nominal == T0 + 2 * S
    assert plan(1.1, deadline=timedelta(milliseconds=200)).fired == tuple(at(1))


def test_a_dropped_run_once_fire_leaves_its_older_slots_missed() -> None:
    assert by_outcome(plan(3.5, deadline=timedelta(milliseconds=200))) == {"missed": at(1, 2), "dropped": at(3)}


def test_run_all_drops_only_the_slots_past_the_deadline() -> None:
    p = plan(5.5, misfire="run_all", deadline=2 * S)
    assert by_outcome(p) == {"dropped": at(1, 2, 3), "fired": at(4, 5)}


# --- overlap ------------------------------------------------------------------------------------------


def test_allow_ignores_running_executions() -> None:
    p = plan_row(EVERY_S, T0 + S, T0 + S, FirePolicy(), max_records=10, running=RUNNING)
    assert p.fired == tuple(at(1))
    assert p.cancel == ()


def test_forbid_skips_while_one_runs() -> None:
    p = plan_row(EVERY_S, T0 + S, T0 + S, FirePolicy(overlap="forbid"), max_records=10, running=RUNNING[:1])
    assert [(s.outcome, s.reason) for s in p.slots] == [("skipped", "overlap")]
    assert p.next_nominal == T0 + 2 * S
    assert plan_row(EVERY_S, T0 + S, T0 + S, FirePolicy(overlap="forbid"), max_records=10).fired == tuple(at(1))


def test_forbid_fires_one_slot_per_round_even_under_run_all() -> None:
    p = plan(3, misfire="run_all", overlap="forbid")
    assert by_outcome(p) == {"fired": at(1), "skipped": at(2, 3)}


def test_replace_cancels_the_running_ones_and_fires_the_latest() -> None:
    p = plan_row(EVERY_S, T0 + S, T0 + S, FirePolicy(overlap="replace"), max_records=10, running=RUNNING)
    assert p.fired == tuple(at(1))
    assert p.cancel == RUNNING
    p = plan(3, misfire="run_all", overlap="replace")
    assert by_outcome(p) == {"skipped": at(1, 2), "fired": at(3)}


def test_nothing_is_cancelled_when_nothing_fires() -> None:
    policy = FirePolicy(overlap="replace", deadline=timedelta(milliseconds=1))
    p = plan_row(EVERY_S, T0 + S, T0 + 2.5 * S, policy, max_records=10, running=RUNNING)
    assert p.fired == ()
    assert p.cancel == ()


# --- max_runs -----------------------------------------------------------------------------------------


def test_max_runs_completes_the_job_at_the_limit() -> None:
    p = plan_row(EVERY_S, T0 + S, T0 + S, FirePolicy(max_runs=3), max_records=10, runs_fired=2)
    assert p.fired == tuple(at(1))
    assert p.completed
    assert p.next_nominal is None
    p = plan_row(EVERY_S, T0 + S, T0 + S, FirePolicy(max_runs=3), max_records=10, runs_fired=1)
    assert not p.completed
    assert p.next_nominal == T0 + 2 * S


def test_slots_beyond_the_budget_are_skipped() -> None:
    p = plan_row(EVERY_S, T0 + S, T0 + 4 * S, FirePolicy("run_all", max_runs=5), max_records=10, runs_fired=3)
    assert by_outcome(p) == {"fired": at(1, 2), "skipped": at(3, 4)}
    assert {s.reason for s in p.slots if s.outcome == "skipped"} == {"max_runs"}
    assert p.completed


def test_skipped_overlap_fires_do_not_count_toward_max_runs() -> None:
    p = plan_row(EVERY_S, T0 + S, T0 + S, FirePolicy(overlap="forbid", max_runs=1), max_records=10, running=RUNNING)
    assert not p.completed
    assert p.next_nominal == T0 + 2 * S


# --- enumeration --------------------------------------------------------------------------------------


def test_a_one_off_completes_after_it_fires() -> None:
    once = parse_schedule((T0 + S).isoformat())
    p = plan_row(once, T0 + S, T0 + 2 * S, FirePolicy(), max_records=10)
    assert p.fired == tuple(at(1))
    assert p.completed
    assert p.next_nominal is None


def test_nothing_due_is_a_no_op() -> None:
    p = plan(0.5, first=1)
    assert p.slots == ()
    assert p.next_nominal == T0 + S


@pytest.mark.parametrize(("head", "tail"), [(0, 1), (2, 1), (3, 3), (5, 4), (50, 1)])
@pytest.mark.parametrize("count", [1, 2, 5, 6, 7, 9, 12, 40])
def test_collect_due_keeps_the_oldest_and_newest_exactly(head: int, tail: int, count: int) -> None:
    due = collect_due(EVERY_S, T0 + S, T0 + count * S + S / 2, keep_head=head, keep_tail=tail)
    every = at(*range(1, count + 1))
    assert list(due.tail) == every[-tail:]
    assert list(due.head) == every[: max(min(head, count - tail), 0)]
    assert due.unrecorded == (count > head + tail)


def test_collect_due_on_a_cron_schedule_matches_enumeration() -> None:
    cron = parse_schedule("*/7 * * * *", timezone="Europe/Berlin")
    first = cron.next_after(T0)
    assert first is not None
    now = first + timedelta(days=2, minutes=3)
    every = [first]
    while (following := cron.next_after(every[-1])) is not None and following <= now:
        every.append(following)
    due = collect_due(cron, first, now, keep_head=10, keep_tail=5)
    assert due == DueSlots(tuple(every[:10]), tuple(every[-5:]), unrecorded=True)


def test_collect_due_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="keep_tail"):
        collect_due(EVERY_S, T0 + S, T0 + S, keep_head=1, keep_tail=0)
    with pytest.raises(ValueError, match="due"):
        collect_due(EVERY_S, T0 + 2 * S, T0 + S, keep_head=1, keep_tail=1)


def test_slots_between_is_inclusive_and_bounded() -> None:
    assert slots_between(EVERY_S, T0 + 1.5 * S, T0 + 4 * S, 10) == (at(2, 3, 4), False)
    assert slots_between(EVERY_S, T0 + S, T0 + 4 * S, 2) == (at(1, 2), True)
    assert slots_between(EVERY_S, T0 + 5 * S, T0 + 4 * S, 2) == ([], False)


@pytest.mark.parametrize("misfire", ["skip", "run_once", "run_all"])
@pytest.mark.parametrize("deadline", [None, timedelta(milliseconds=100), timedelta(seconds=5)])
@pytest.mark.parametrize("late", [timedelta(0), timedelta(milliseconds=500), timedelta(seconds=3)])
def test_the_single_slot_shortcut_decides_as_the_general_path(
    misfire: MisfirePolicy, deadline: timedelta | None, late: timedelta
) -> None:
    hourly = Every(T0, timedelta(hours=1))
    policy = FirePolicy(misfire, deadline=deadline, threshold=timedelta(seconds=1))
    first, now = T0 + timedelta(hours=1), T0 + timedelta(hours=1) + late
    shortcut = plan_row(hourly, first, now, policy, max_records=10)
    slots, cancel, completed = decide(collect_due(hourly, first, now, keep_head=10, keep_tail=1), policy, now)
    assert shortcut.slots == tuple(slots)
    assert (shortcut.cancel, shortcut.completed) == (cancel, completed)
    assert shortcut.next_nominal == T0 + timedelta(hours=2)


def test_a_backfill_window_is_half_open_and_capped() -> None:
    assert window_slots(EVERY_S, T0 + S, T0 + 4 * S, cap=10) == at(1, 2, 3)
    assert window_slots(EVERY_S, T0 + 0.5 * S, T0 + 1.5 * S, cap=10) == at(1)
    assert window_slots(EVERY_S, T0 + S, T0 + 4 * S, cap=3) == at(1, 2, 3)
    with pytest.raises(InvalidInput) as caught:
        window_slots(EVERY_S, T0 + S, T0 + 5 * S, cap=3)
    assert caught.value.field == "to"
