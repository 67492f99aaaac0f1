"""What happens to each due slot of a schedule: misfire, starting deadline, overlap and ``max_runs``.

All times are *nominal* slot times, and ``now`` is the scheduler's clock minus the job's jitter offset,
so "due" means ``nominal + jitter <= clock`` and every lateness below is measured from the jittered due
time. The policies apply in this order to the slots due at once:

1. **Misfire** (more than one slot due, or the one slot later than the misfire threshold: the scheduler
   was down, or the job was starved):

   - ``run_once`` (default): fire the latest due slot; the older ones are ``coalesced`` into it.
   - ``skip``: every slot older than the latest is ``missed``; the latest fires only if it is within the
     threshold, else it is ``missed`` too. Nothing is fired late.
   - ``run_all``: fire the newest ``misfire_cap`` due slots, oldest first; older ones are ``missed``.

2. **Starting deadline**: a slot to fire whose due time is more than ``starting_deadline_seconds`` ago
   is ``dropped`` (and a ``run_once`` whose fire is dropped leaves its older slots ``missed``, since no
   run stands for them).
3. **Overlap**, against the job's running executions: ``allow`` fires; ``forbid`` records ``skipped``
   (reason ``overlap``) while one runs, and fires at most one slot per round; ``replace`` cancels every
   running execution and fires the latest slot only (earlier ones are ``skipped``, replaced).
4. **max_runs**: slots beyond the remaining budget are ``skipped`` (reason ``max_runs``); reaching the
   budget completes the job.

Enumeration is bounded whatever the downtime: at most ``max_records`` older slots are recorded one by
one, the newest ones are found by bisection (:func:`latest_at_or_before`), and the plan says when slots
in between went unrecorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from automation_contracts import JobSpec
from automation_contracts.jobs import MisfirePolicy, OverlapPolicy
from automation_scheduler.domain.schedules import FireTimes

Outcome = Literal["fired", "skipped", "missed", "coalesced", "paused", "dropped", "backfill"]
RESOLUTION = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class FirePolicy:
    """A job's firing policies (from its JobSpec) and the scheduler's misfire threshold."""

    misfire: MisfirePolicy = "run_once"
    misfire_cap: int = 100
    deadline: timedelta | None = None
    overlap: OverlapPolicy = "allow"
    max_runs: int | None = None
    threshold: timedelta = timedelta(seconds=60)

    @classmethod
    def of(cls, spec: JobSpec, threshold: timedelta) -> FirePolicy:
        deadline = spec.starting_deadline_seconds
        return cls(
            misfire=spec.misfire_policy,
            misfire_cap=spec.misfire_cap,
            deadline=timedelta(seconds=deadline) if deadline is not None else None,
            overlap=spec.overlap_policy,
            max_runs=spec.max_runs,
            threshold=threshold,
        )


@dataclass(frozen=True, slots=True)
class Slot:
    """One slot's recorded outcome."""

    nominal: datetime
    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DueSlots:
    """The due slots of a schedule, oldest first: up to ``keep_head`` oldest and ``keep_tail`` newest."""

    head: tuple[datetime, ...]
    tail: tuple[datetime, ...]
    """The newest due slots; its last element is the latest due slot."""
    unrecorded: bool
    """Some due slots lie between ``head`` and ``tail`` and were not enumerated."""
    following: datetime | None = None
    """The first slot after the latest due one, when ``following_known``."""
    following_known: bool = False


@dataclass(frozen=True, slots=True)
class RowPlan:
    """What one due schedule does in this round."""

    slots: tuple[Slot, ...]
    """Every enumerated due slot with its outcome, oldest first (the fired ones included)."""
    cancel: tuple[uuid.UUID, ...]
    """Running executions to cancel (``replace``), only if a slot fires."""
    next_nominal: datetime | None
    """The first slot after the latest due one; None when the schedule ends or the job completes."""
    completed: bool
    unrecorded: bool

    @property
    def fired(self) -> tuple[datetime, ...]:
        return tuple(slot.nominal for slot in self.slots if slot.outcome == "fired")


def latest_at_or_before(schedule: FireTimes, slot: datetime, now: datetime) -> datetime:
    """The latest slot ≤ ``now``, given a slot ≤ ``now``, in O(log((now - slot) / 1µs)) ``next_after`` calls.

    ``next_after`` is monotone, so bisection finds the largest ``lo`` with ``next_after(lo) ≤ now``;
    the slot after it is the latest one not after ``now``.
    """
    if slot > now:
        raise ValueError("slot must not be after now")
    following = schedule.next_after(slot)
    if following is None or following > now:
        return slot
    lo, hi = slot, now  # invariant: next_after(lo) <= now < next_after(hi) (or None)
    while hi - lo > RESOLUTION:
        mid = lo + (hi - lo) // 2
        candidate = schedule.next_after(mid)
        if candidate is not None and candidate <= now:
            lo = mid
        else:
            hi = mid
    latest = schedule.next_after(lo)
    assert latest is not None
    return latest


def collect_due(schedule: FireTimes, first: datetime, now: datetime, *, keep_head: int, keep_tail: int) -> DueSlots:
    """The due slots from ``first`` (a slot ≤ ``now``) to ``now``: all of them when there are at most
    ``keep_head + keep_tail``, else the oldest ``keep_head`` and the newest ``keep_tail``."""
    if keep_tail < 1 or keep_head < 0:
        raise ValueError("keep_tail must be at least 1 and keep_head at least 0")
    if first > now:
        raise ValueError("the first slot must be due")
    known = [first]
    following = schedule.next_after(first)
    while following is not None and following <= now and len(known) < keep_head + keep_tail:
        known.append(following)
        following = schedule.next_after(following)
    if following is None or following > now:
        return DueSlots(tuple(known[:-keep_tail]), tuple(known[-keep_tail:]), False, following, following_known=True)
    boundary = known[-1]
    back = [latest_at_or_before(schedule, following, now)]
    while len(back) < keep_tail:
        previous = latest_at_or_before(schedule, boundary, back[-1] - RESOLUTION)
        if previous <= boundary:
            break
        back.append(previous)
    combined = known + back[::-1]
    rest = combined[:-keep_tail]
    return DueSlots(tuple(rest[:keep_head]), tuple(combined[-keep_tail:]), unrecorded=True)


def _misfire(due: DueSlots, policy: FirePolicy, now: datetime) -> tuple[list[Slot], list[datetime]]:
    """Older slots with their outcome, and the candidates to fire."""
    latest = due.tail[-1]
    if policy.misfire == "run_all":
        return [Slot(s, "missed", "misfire") for s in due.head], list(due.tail)
    older = [*due.head, *due.tail[:-1]]
    if policy.misfire == "run_once":
        return [Slot(s, "coalesced") for s in older], [latest]
    missed = [Slot(s, "missed", "misfire") for s in older]
    if now - latest > policy.threshold:
        return [*missed, Slot(latest, "missed", "misfire")], []
    return missed, [latest]


def decide(
    due: DueSlots,
    policy: FirePolicy,
    now: datetime,
    *,
    running: Sequence[uuid.UUID] = (),
    runs_fired: int = 0,
) -> tuple[list[Slot], tuple[uuid.UUID, ...], bool]:
    """Outcomes of the due slots (oldest first), executions to cancel, and whether the job completes."""
    older, candidates = _misfire(due, policy, now)
    decided: list[Slot] = []
    if policy.deadline is not None:
        late = [c for c in candidates if now - c > policy.deadline]
        decided += [Slot(c, "dropped", "deadline") for c in late]
        candidates = [c for c in candidates if c not in late]
        if late and not candidates and policy.misfire == "run_once":
            older = [Slot(s.nominal, "missed", "misfire") for s in older]
    cancel: tuple[uuid.UUID, ...] = ()
    if candidates and policy.overlap == "forbid":
        keep = [] if running else candidates[:1]
        decided += [Slot(c, "skipped", "overlap") for c in candidates if c not in keep]
        candidates = keep
    elif candidates and policy.overlap == "replace":
        cancel = tuple(running)
        decided += [Slot(c, "skipped", "overlap") for c in candidates[:-1]]
        candidates = candidates[-1:]
    completed = False
    if policy.max_runs is not None:
        budget = max(policy.max_runs - runs_fired, 0)
        decided += [Slot(c, "skipped", "max_runs") for c in candidates[budget:]]
        candidates = candidates[:budget]
        completed = runs_fired + len(candidates) >= policy.max_runs
    decided += [Slot(c, "fired") for c in candidates]
    if not candidates:
        cancel = ()
    slots = sorted([*older, *decided], key=lambda slot: slot.nominal)
    return slots, cancel, completed


def plan_row(
    schedule: FireTimes,
    first_due: datetime,
    now: datetime,
    policy: FirePolicy,
    *,
    max_records: int,
    running: Sequence[uuid.UUID] = (),
    runs_fired: int = 0,
) -> RowPlan:
    """The plan of one due schedule whose stored next slot is ``first_due`` (nominal) at ``now``."""
    if first_due > now:
        return RowPlan((), (), first_due, completed=False, unrecorded=False)
    if policy.overlap == "allow" and policy.max_runs is None:
        single = _single_due(schedule, first_due, now, policy)
        if single is not None:
            return single
    keep_tail = policy.misfire_cap if policy.misfire == "run_all" else 1
    due = collect_due(schedule, first_due, now, keep_head=max_records, keep_tail=keep_tail)
    slots, cancel, completed = decide(due, policy, now, running=running, runs_fired=runs_fired)
    following = None if completed else _following(schedule, due)
    return RowPlan(tuple(slots), cancel, following, completed=completed or following is None, unrecorded=due.unrecorded)


def _single_due(schedule: FireTimes, first_due: datetime, now: datetime, policy: FirePolicy) -> RowPlan | None:
    """The common case — one slot due, no overlap or max_runs policy — decided without the general
    machinery (the same outcome :func:`decide` gives); None when more than one slot is due."""
    following = schedule.next_after(first_due)
    if following is not None and following <= now:
        return None
    late = now - first_due
    if policy.misfire == "skip" and late > policy.threshold:
        slot = Slot(first_due, "missed", "misfire")
    elif policy.deadline is not None and late > policy.deadline:
        slot = Slot(first_due, "dropped", "deadline")
    else:
        slot = Slot(first_due, "fired")
    return RowPlan((slot,), (), following, completed=following is None, unrecorded=False)


def _following(schedule: FireTimes, due: DueSlots) -> datetime | None:
    return due.following if due.following_known else schedule.next_after(due.tail[-1])


def slots_between(schedule: FireTimes, start: datetime, now: datetime, limit: int) -> tuple[list[datetime], bool]:
    """The slots from ``start`` (inclusive) to ``now`` (inclusive): at most ``limit``, and whether more
    were left out."""
    found: list[datetime] = []
    current = schedule.next_after(start - RESOLUTION)
    while current is not None and current <= now:
        if len(found) >= limit:
            return found, True
        found.append(current)
        current = schedule.next_after(current)
    return found, False
