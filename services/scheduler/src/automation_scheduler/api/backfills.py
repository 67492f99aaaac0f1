"""Backfill: ``POST /api/v1/jobs/{job_id}/backfill`` and ``GET /api/v1/backfills/{backfill_id}``.

The public API for backfill lives on the scheduler (port 8001), which owns the schedules and fires it
enumerates. An account may backfill only its own jobs; the admin any.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from automation_contracts.primitives import Instant
from automation_core.http import CurrentPrincipal
from automation_core.openapi import problems
from automation_scheduler.api.deps import SchedulerDep
from automation_scheduler.api.routes import scope

router = APIRouter(prefix="/api/v1", tags=["backfills"])


class BackfillIn(BaseModel):
    """A window of the job's schedule to run: every slot in ``[from, to)``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Instant = Field(alias="from", description="First instant of the window (inclusive).")
    to: Instant = Field(description="End of the window (exclusive); not in the future.")
    max_concurrency: Annotated[int, Field(ge=1, le=50, description="Most backfill runs out at once.")] = 2


class BackfillAccepted(BaseModel):
    """The backfill and how many runs it created (slots already backfilled are not created again)."""

    backfill_id: uuid.UUID
    slots: int


class BackfillOut(BaseModel):
    """A backfill's progress."""

    backfill_id: uuid.UUID
    job_id: uuid.UUID
    job_version: int
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    max_concurrency: int
    total: int = Field(description="Runs created.")
    released: int = Field(description="Runs published so far.")
    finished: int = Field(description="Runs that ended (succeeded or failed).")
    succeeded: int
    failed: int = Field(description="Runs that failed, timed out or were cancelled.")
    state: str = Field(description="running, or done when every run finished.")
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> BackfillOut:
        return cls(
            backfill_id=row.id,
            job_id=row.job_id,
            job_version=row.job_version,
            from_=row.from_time,
            to=row.to_time,
            max_concurrency=row.max_concurrency,
            total=row.total,
            released=row.released,
            finished=row.succeeded + row.failed,
            succeeded=row.succeeded,
            failed=row.failed,
            state="done" if row.completed_at is not None else "running",
            created_at=row.created_at,
            completed_at=row.completed_at,
        )


@router.post(
    "/jobs/{job_id}/backfill",
    status_code=202,
    summary="Run the slots the job's schedule implies in a past window",
    response_model=BackfillAccepted,
    responses=problems(404, 409, 422, 503),
)
async def create_backfill(
    job_id: uuid.UUID, body: BackfillIn, principal: CurrentPrincipal, scheduler: SchedulerDep
) -> BackfillAccepted:
    created = await scheduler.backfills.create(job_id, scope(principal), body.from_, body.to, body.max_concurrency)
    return BackfillAccepted(backfill_id=created.backfill_id, slots=created.slots)


@router.get(
    "/backfills/{backfill_id}",
    summary="A backfill's progress",
    response_model=BackfillOut,
    response_model_by_alias=True,
    responses=problems(404, 422, 503),
)
async def get_backfill(backfill_id: uuid.UUID, principal: CurrentPrincipal, scheduler: SchedulerDep) -> BackfillOut:
    return BackfillOut.from_row(await scheduler.backfills.get(backfill_id, scope(principal)))
