"""How a job change becomes a schedule row: version idempotency, state, anchor and next fire time.

Rules (at-least-once delivery, any order):

- A change whose job version is not newer than the stored one is ignored (acked, nothing written).
- A deleted job is ``deleted`` (tombstone kept so an older, late ``job.created`` stays ignored); a job
  without a schedule is ``no_schedule``; a disabled one ``paused``; otherwise ``active``.
- The anchor is the first-seen ``changed_at`` (the job's creation time when ``job.created`` came first);
  ``@every`` schedules fire at anchor + k·interval, so they never drift with run length or updates.
- When the timing inputs change (expression, time zone, or becoming active), the next fire time is
  recomputed from *now*, not from the old fire time; otherwise the stored next fire time is kept, so an
  edit of the steps alone neither skips nor repeats a slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

ScheduleState = Literal["active", "paused", "no_schedule", "deleted"]


class FireTimes(Protocol):
    """What the scheduler needs of a parsed schedule (``automation_schedule.Schedule`` provides it)."""

    def next_after(self, after: datetime, /) -> datetime | None:
        """The first fire time strictly after ``after`` (aware UTC), or None when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """The fields of a stored schedule row that a change is decided on."""

    job_version: int
    expression: str | None
    timezone: str
    anchor: datetime
    state: ScheduleState
    next_fire_at: datetime | None


@dataclass(frozen=True, slots=True)
class IncomingVersion:
    """A job version as a ``job.created|updated|deleted`` event carries it."""

    version: int
    changed_at: datetime
    deleted: bool = False
    expression: str | None = None
    timezone: str = "UTC"
    enabled: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """What to write for an accepted version."""

    state: ScheduleState
    anchor: datetime
    reschedule: bool
    """True when the timing inputs changed: the next fire time must be recomputed from now."""

    def next_fire_at(
        self, stored: StoredSchedule | None, fire_times: FireTimes | None, now: datetime
    ) -> datetime | None:
        """The next nominal fire time to store (None unless active)."""
        if self.state != "active":
            return None
        if not self.reschedule and stored is not None:
            return stored.next_fire_at
        if fire_times is None:
            raise ValueError("an active schedule needs its parsed fire times")
        return fire_times.next_after(now)


def is_newer(stored_version: int | None, incoming_version: int) -> bool:
    """Whether an incoming job version supersedes the stored one (strictly greater)."""
    return stored_version is None or incoming_version > stored_version


def state_for(incoming: IncomingVersion) -> ScheduleState:
    """The schedule state a job version implies."""
    if incoming.deleted:
        return "deleted"
    if incoming.expression is None:
        return "no_schedule"
    if not incoming.enabled:
        return "paused"
    return "active"


def plan_change(stored: StoredSchedule | None, incoming: IncomingVersion) -> ScheduleChange | None:
    """The change to apply, or None when the incoming version is stale (ignore it)."""
    if not is_newer(stored.job_version if stored else None, incoming.version):
        return None
    state = state_for(incoming)
    if stored is None:
        return ScheduleChange(state=state, anchor=incoming.changed_at, reschedule=state == "active")
    timing_changed = (
        stored.state != state
        or stored.expression != incoming.expression
        or (stored.timezone != incoming.timezone and not incoming.deleted)
    )
    return ScheduleChange(state=state, anchor=stored.anchor, reschedule=state == "active" and timing_changed)
