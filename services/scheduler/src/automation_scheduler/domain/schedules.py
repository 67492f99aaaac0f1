"""How a job change becomes a schedule row: version idempotency, state, anchor and next fire time.

Rules (at-least-once delivery, any order):

- A change whose job version is not newer than the stored one is ignored (acked, nothing written).
- A deleted job is ``deleted`` (tombstone kept so an older, late ``job.created`` stays ignored); a job
  without a schedule is ``no_schedule``; a disabled one ``paused``; otherwise ``active`` — or
  ``completed`` once its schedule has no fire left (a past one-off, an ended window) or it has fired
  ``max_runs`` runs (:func:`settle_state`).
- The anchor is the first-seen ``changed_at`` (the job's creation time when ``job.created`` came first);
  ``@every`` schedules fire at anchor + k·interval, so they never drift with run length or updates.
- When the timing inputs change (expression, time zone, window, DST policies, jitter, or becoming
  active), the next fire time is recomputed from *now*, not from the old fire time; otherwise the stored
  next fire time is kept, so an edit of the steps alone neither skips nor repeats a slot.
- Pausing remembers the first slot held back (``paused_from``); resuming records the slots from there
  to now as ``paused`` (:func:`pause_bookkeeping`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

ScheduleState = Literal["active", "paused", "no_schedule", "deleted", "completed"]
Timing = tuple[str | None, str | None, str, str, float]
"""The timing options of a spec besides expression and zone: start_at, end_at, gap, overlap, jitter."""
DEFAULT_TIMING: Timing = (None, None, "shift", "first", 0.0)


def timing_of(spec: dict[str, Any] | None) -> Timing:
    """The timing options of a JobSpec document (``model_dump(mode="json")`` form; older ones lack them)."""
    if spec is None:
        return DEFAULT_TIMING
    return (
        spec.get("start_at"),
        spec.get("end_at"),
        str(spec.get("dst_gap", "shift")),
        str(spec.get("dst_overlap", "first")),
        float(spec.get("jitter_seconds", 0)),
    )


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
    timing: Timing = DEFAULT_TIMING
    runs_fired: int = 0
    paused_from: datetime | None = None
    offset: timedelta = timedelta(0)
    """The stored version's jitter offset (``next_fire_at`` is the nominal slot plus it)."""
    last_fire_at: datetime | None = None
    """The nominal time of the last slot fired (None before the first)."""


@dataclass(frozen=True, slots=True)
class IncomingVersion:
    """A job version as a ``job.created|updated|deleted`` event carries it."""

    version: int
    changed_at: datetime
    deleted: bool = False
    expression: str | None = None
    timezone: str = "UTC"
    enabled: bool = False
    timing: Timing = DEFAULT_TIMING
    max_runs: int | None = None


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    """What to write for an accepted version."""

    state: ScheduleState
    anchor: datetime
    reschedule: bool
    """True when the timing inputs changed: the next fire time must be recomputed from now."""

    def next_fire_at(
        self,
        stored: StoredSchedule | None,
        fire_times: FireTimes | None,
        now: datetime,
        offset: timedelta = timedelta(0),
    ) -> datetime | None:
        """The next due time to store (the next nominal slot plus the jitter ``offset``; None unless active)."""
        if self.state != "active":
            return None
        if not self.reschedule and stored is not None:
            return stored.next_fire_at
        if fire_times is None:
            raise ValueError("an active schedule needs its parsed fire times")
        nominal = fire_times.next_after(first_undecided(stored, now, offset) - EPSILON)
        return None if nominal is None else nominal + offset


EPSILON = timedelta(microseconds=1)


def first_undecided(stored: StoredSchedule | None, now: datetime, offset: timedelta) -> datetime:
    """The earliest nominal time a (re)scheduled job may fire at.

    - A new job: its creation (``now``). A slot whose nominal time came before the job existed is not
      its slot, even when its jitter ``offset`` would publish it later.
    - An active job whose timing changed: the first slot its stored timing had not decided
      (``stored.next_fire_at`` less the stored offset), so an edit neither decides a slot again nor
      skips the slots in between (a smaller jitter used to skip them silently; a larger one to decide
      them again).
    - A resumed job: ``now - offset`` (the slots its pause held back are recorded ``paused``).

    Never at or before the last slot fired, which the fire loop may have decided ahead of its time.
    """
    if stored is None:
        floor = now
    elif stored.state == "active" and stored.next_fire_at is not None:
        floor = stored.next_fire_at - stored.offset
    else:
        floor = now - offset
    if stored is not None and stored.last_fire_at is not None:
        floor = max(floor, stored.last_fire_at + EPSILON)
    return floor


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
        or (not incoming.deleted and (stored.timezone != incoming.timezone or stored.timing != incoming.timing))
    )
    return ScheduleChange(state=state, anchor=stored.anchor, reschedule=state == "active" and timing_changed)


def settle_state(
    state: ScheduleState, next_fire_at: datetime | None, runs_fired: int, max_runs: int | None
) -> ScheduleState:
    """``completed`` for an active job with no fire left or its ``max_runs`` reached; else ``state``."""
    if state != "active":
        return state
    if next_fire_at is None or (max_runs is not None and runs_fired >= max_runs):
        return "completed"
    return state


@dataclass(frozen=True, slots=True)
class PauseBookkeeping:
    """Where a pause began, and on resume the first slot to record as ``paused``."""

    paused_from: datetime | None
    """To store: the first held-back nominal slot while paused, else None."""
    resumed_from: datetime | None
    """The first nominal slot the pause held back, when this change resumes the job."""


def pause_bookkeeping(stored: StoredSchedule | None, state: ScheduleState) -> PauseBookkeeping:
    """Pausing an active job remembers its next nominal slot; resuming hands it back once."""
    if stored is None:
        return PauseBookkeeping(None, None)
    if state == "paused":
        if stored.state == "paused":
            return PauseBookkeeping(stored.paused_from, None)
        if stored.state == "active" and stored.next_fire_at is not None:
            return PauseBookkeeping(stored.next_fire_at - stored.offset, None)
        return PauseBookkeeping(None, None)
    if state in ("active", "completed") and stored.state == "paused":
        return PauseBookkeeping(None, stored.paused_from)
    return PauseBookkeeping(None, None)
