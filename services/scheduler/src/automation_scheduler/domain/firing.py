"""Which slots of a due schedule fire, and the run identity of a fire.

Misfire policy (foundation: coalesce). When several nominal slots are due at once (the scheduler was
down, or a batch ran late), only the latest due slot fires; the earlier ones are recorded as
``missed``. At most ``max_missed_records`` missed slots are enumerated and recorded one by one; beyond
that the latest due slot is found by bisection (a bounded number of ``next_after`` calls, whatever the
downtime) and the plan says the record was truncated.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from automation_scheduler.domain.schedules import FireTimes

EXECUTION_NAMESPACE = uuid.UUID("5f1c1a52-7c1e-4d43-9a3e-3b7f4b1e2a60")
"""Namespace of scheduled runs' execution ids (uuid5 of ``"<job_id>:<nominal time ISO>"``)."""

_RESOLUTION = timedelta(microseconds=1)


def execution_id_for(job_id: uuid.UUID, nominal_time: datetime) -> uuid.UUID:
    """The deterministic execution id of a scheduled run: the same slot always maps to the same id."""
    if nominal_time.tzinfo is None:
        raise ValueError("nominal_time must be timezone-aware")
    return uuid.uuid5(EXECUTION_NAMESPACE, f"{job_id}:{nominal_time.astimezone(UTC).isoformat()}")


def default_parameters(parameters_schema: dict[str, Any]) -> dict[str, Any]:
    """Run parameters from the job's parameters JSON Schema: each ``properties.<name>.default``."""
    properties = parameters_schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {name: prop["default"] for name, prop in properties.items() if isinstance(prop, dict) and "default" in prop}


@dataclass(frozen=True, slots=True)
class DuePlan:
    """The outcome of one due schedule at ``now``."""

    fire: datetime | None
    """The nominal slot to fire (the latest due one), or None when nothing is due."""
    missed: tuple[datetime, ...]
    """Earlier due slots coalesced into ``fire``, oldest first, recorded as missed."""
    truncated: bool
    """More slots were missed than ``missed`` holds (the unrecorded ones lie between its last element and ``fire``)."""
    next_fire_at: datetime | None
    """The first slot after ``fire`` (or the unchanged first slot when nothing is due); None when done."""


def plan_due(schedule: FireTimes, first_due: datetime, now: datetime, *, max_missed_records: int) -> DuePlan:
    """Coalesce the due slots of one schedule, from its stored next fire time up to ``now`` inclusive."""
    if first_due > now:
        return DuePlan(fire=None, missed=(), truncated=False, next_fire_at=first_due)
    slots = [first_due]
    jumped = False
    while True:
        following = schedule.next_after(slots[-1])
        if following is None or following > now:
            break
        if len(slots) > max_missed_records:
            latest = latest_at_or_before(schedule, following, now)
            jumped = latest != following
            slots.append(latest)
            break
        slots.append(following)
    fire, missed = slots[-1], slots[:-1]
    return DuePlan(
        fire=fire,
        missed=tuple(missed[:max_missed_records]),
        truncated=jumped or len(missed) > max_missed_records,
        next_fire_at=schedule.next_after(fire),
    )


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
    while hi - lo > _RESOLUTION:
        mid = lo + (hi - lo) // 2
        candidate = schedule.next_after(mid)
        if candidate is not None and candidate <= now:
            lo = mid
        else:
            hi = mid
    latest = schedule.next_after(lo)
    assert latest is not None
    return latest
