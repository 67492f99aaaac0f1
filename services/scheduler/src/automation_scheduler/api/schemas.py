"""Request and response bodies of the scheduler API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from automation_contracts.primitives import Instant
from automation_schedule import jitter_offset

ScheduleStateName = Literal["active", "paused", "no_schedule", "deleted", "completed"]
FireOutcome = Literal["fired", "skipped", "missed", "coalesced", "paused", "dropped", "backfill"]
EventFireOutcome = Literal["fired", "skipped", "rate_limited"]


class ScheduleOut(BaseModel):
    """The scheduler's view of one job."""

    job_id: uuid.UUID
    account_id: uuid.UUID
    job_name: str | None = Field(description="The job's name at job_version (None for a job deleted unseen).")
    job_version: int
    schedule: str | None = Field(description="The schedule expression, or None for manual/event jobs.")
    timezone: str
    anchor: datetime = Field(description="First-seen job change time; @every schedules fire at anchor + k·interval.")
    enabled: bool
    state: ScheduleStateName
    next_fire_at: datetime | None = Field(description="Nominal time of the next slot.")
    next_due_at: datetime | None = Field(description="When the next slot is published: its nominal time plus jitter.")
    last_fire_at: datetime | None = Field(description="Nominal time of the latest fire.")
    runs_fired: int = Field(description="Scheduled and event-triggered runs fired (counted against max_runs).")
    max_runs: int | None
    misfire_policy: str
    overlap_policy: str
    jitter_seconds: float = Field(description="The job's jitter bound; its fixed offset is next_due_at - next_fire_at.")
    triggers: int = Field(description="How many event triggers the job has.")
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ScheduleOut:
        spec = row.spec if isinstance(row.spec, dict) else {}
        jitter = float(spec.get("jitter_seconds", 0))
        due = row.next_fire_at
        return cls(
            job_id=row.job_id,
            account_id=row.account_id,
            job_name=spec.get("name"),
            job_version=row.job_version,
            schedule=row.expression,
            timezone=row.timezone,
            anchor=row.anchor,
            enabled=row.enabled,
            state=row.state,
            next_fire_at=None if due is None else due - jitter_offset(str(row.job_id), jitter),
            next_due_at=due,
            last_fire_at=row.last_fire_at,
            runs_fired=row.runs_fired,
            max_runs=spec.get("max_runs"),
            misfire_policy=spec.get("misfire_policy", "run_once"),
            overlap_policy=spec.get("overlap_policy", "allow"),
            jitter_seconds=jitter,
            triggers=len(spec.get("triggers", [])),
            updated_at=row.updated_at,
        )


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None


class FireOut(BaseModel):
    """The recorded outcome of one nominal slot."""

    job_id: uuid.UUID
    nominal_time: datetime
    trigger: Literal["schedule", "backfill"]
    outcome: FireOutcome
    reason: str | None = Field(description="Why it did not fire: misfire, deadline, overlap, max_runs, job paused.")
    job_version: int
    execution_id: uuid.UUID | None = Field(description="The run's execution id (fired and backfill slots).")
    backfill_id: uuid.UUID | None
    fired_at: datetime | None
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> FireOut:
        return cls(
            job_id=row.job_id,
            nominal_time=row.nominal_time,
            trigger=row.trigger,
            outcome=row.outcome,
            reason=row.reason,
            job_version=row.job_version,
            execution_id=row.execution_id,
            backfill_id=row.backfill_id,
            fired_at=row.fired_at,
            recorded_at=row.recorded_at,
        )


class FireList(BaseModel):
    items: list[FireOut]
    next_cursor: str | None


class EventFireOut(BaseModel):
    """What one event did to one job."""

    job_id: uuid.UUID
    event_id: str
    event_type: str
    trigger_index: int = Field(description="Position of the trigger that matched, in the job's triggers.")
    outcome: EventFireOutcome
    reason: str | None
    job_version: int
    execution_id: uuid.UUID | None
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> EventFireOut:
        return cls(
            job_id=row.job_id,
            event_id=row.event_id,
            event_type=row.event_type,
            trigger_index=row.position,
            outcome=row.outcome,
            reason=row.reason,
            job_version=row.job_version,
            execution_id=row.execution_id,
            recorded_at=row.recorded_at,
        )


class EventFireList(BaseModel):
    items: list[EventFireOut]
    next_cursor: str | None


class PreviewIn(BaseModel):
    """A schedule to preview, or, with ``job_id``, a proposed edit of a job's timing.

    The same library code as the fire loop computes the times. With ``job_id``, fields left out keep the
    job's values and ``@every`` keeps the job's anchor; without it, ``@every`` is anchored at ``from``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schedule: str | None = Field(default=None, min_length=1, examples=["*/15 * * * *", "@every 90s", "@daily"])
    timezone: str | None = Field(default=None, min_length=1, examples=["Europe/Berlin"])
    start_at: Instant | None = None
    end_at: Instant | None = None
    dst_gap: Literal["shift", "skip"] | None = None
    dst_overlap: Literal["first", "last", "both"] | None = None
    job_id: uuid.UUID | None = Field(default=None, description="Compare with this job's current next fires.")
    from_: Instant | None = Field(
        default=None, alias="from", description="Fire times strictly after this instant (default: now)."
    )
    count: int = Field(default=10, ge=1, le=1000)


class PreviewOut(BaseModel):
    """Next fire times (nominal, UTC; jitter not applied)."""

    fire_times: list[datetime] = Field(description="Of the schedule given (with job_id: the proposed edit).")
    job_id: uuid.UUID | None = None
    current_fire_times: list[datetime] | None = Field(default=None, description="The job's next fires as it is.")
    added: list[datetime] | None = Field(default=None, description="Proposed fire times the job has not now.")
    removed: list[datetime] | None = Field(default=None, description="Current fire times the edit would drop.")
