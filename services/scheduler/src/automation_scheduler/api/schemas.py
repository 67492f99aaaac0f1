"""Request and response bodies of the scheduler API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

ScheduleStateName = Literal["active", "paused", "no_schedule", "deleted"]
FireOutcome = Literal["fired", "missed"]


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
    next_fire_at: datetime | None
    last_fire_at: datetime | None = Field(description="Nominal time of the latest fire.")
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ScheduleOut:
        spec = row.spec if isinstance(row.spec, dict) else {}
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
            next_fire_at=row.next_fire_at,
            last_fire_at=row.last_fire_at,
            updated_at=row.updated_at,
        )


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None


class FireOut(BaseModel):
    """The recorded outcome of one nominal slot."""

    job_id: uuid.UUID
    nominal_time: datetime
    outcome: FireOutcome
    job_version: int
    execution_id: uuid.UUID | None = Field(description="The run's execution id (fired slots only).")
    fired_at: datetime | None
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> FireOut:
        return cls(
            job_id=row.job_id,
            nominal_time=row.nominal_time,
            outcome=row.outcome,
            job_version=row.job_version,
            execution_id=row.execution_id,
            fired_at=row.fired_at,
            recorded_at=row.recorded_at,
        )


class FireList(BaseModel):
    items: list[FireOut]
    next_cursor: str | None


class PreviewIn(BaseModel):
    """A schedule to preview; the same library code as the fire loop computes the times."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schedule: str = Field(min_length=1, examples=["*/15 * * * *", "@every 90s", "@daily"])
    timezone: str = Field(default="UTC", min_length=1, examples=["Europe/Berlin"])
    from_: AwareDatetime | None = Field(
        default=None, alias="from", description="Fire times strictly after this instant (default: now)."
    )
    count: int = Field(default=10, ge=1, le=1000)


class PreviewOut(BaseModel):
    fire_times: list[datetime]
