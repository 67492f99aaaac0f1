"""``/api/v1/schedules``: list, get, a job's slot outcomes and event outcomes.

An account sees only its own jobs' schedules (another account's is a 404); the admin sees all.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from automation_core.auth import Principal
from automation_core.errors import NotFound
from automation_core.http import CurrentPrincipal
from automation_core.openapi import problems
from automation_scheduler.api import cursor
from automation_scheduler.api.deps import SchedulerDep
from automation_scheduler.api.schemas import (
    EventFireList,
    EventFireOut,
    FireList,
    FireOut,
    FireOutcome,
    ScheduleList,
    ScheduleOut,
    ScheduleStateName,
)
from automation_scheduler.db import queries
from automation_scheduler.db.tables import SCHEDULE_STATES

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])
Limit = Annotated[int, Query(ge=1, le=200, description="Page size (at most 200).")]
CursorParam = Annotated[str | None, Query(alias="cursor", description="next_cursor of the previous page.")]


def scope(principal: Principal) -> uuid.UUID | None:
    """The account whose schedules the caller may see; None for the admin (all)."""
    return None if principal.is_admin else principal.require_account()


@router.get("", summary="List schedules", response_model=ScheduleList, responses=problems(422, 503))
async def list_schedules(
    principal: CurrentPrincipal,
    scheduler: SchedulerDep,
    state: Annotated[
        ScheduleStateName | None, Query(description="Only this state (default: every state but deleted).")
    ] = None,
    limit: Limit = 50,
    cursor_: CursorParam = None,
) -> ScheduleList:
    states = (state,) if state else tuple(s for s in SCHEDULE_STATES if s != "deleted")
    async with scheduler.engine.connect() as conn:
        rows = await queries.list_schedules(
            conn, account_id=scope(principal), states=states, after=cursor.decode_uuid(cursor_), limit=limit + 1
        )
    items = [ScheduleOut.from_row(r) for r in rows[:limit]]
    next_cursor = cursor.encode(str(items[-1].job_id)) if len(rows) > limit else None
    return ScheduleList(items=items, next_cursor=next_cursor)


async def visible_schedule(scheduler: SchedulerDep, principal: Principal, job_id: uuid.UUID) -> Any:
    """The schedule row of a job the caller may see (404 otherwise)."""
    async with scheduler.engine.connect() as conn:
        row = await queries.get_schedule(conn, job_id)
    account = scope(principal)
    if row is None or (account is not None and row.account_id != account):
        raise NotFound(f"no schedule for job {job_id}")
    return row


@router.get("/{job_id}", summary="A job's schedule", response_model=ScheduleOut, responses=problems(404, 422, 503))
async def get_schedule(job_id: uuid.UUID, principal: CurrentPrincipal, scheduler: SchedulerDep) -> ScheduleOut:
    return ScheduleOut.from_row(await visible_schedule(scheduler, principal, job_id))


@router.get(
    "/{job_id}/fires",
    summary="A job's slot outcomes, newest first",
    response_model=FireList,
    responses=problems(404, 422, 503),
)
async def list_fires(
    job_id: uuid.UUID,
    *,
    principal: CurrentPrincipal,
    scheduler: SchedulerDep,
    outcome: Annotated[FireOutcome | None, Query(description="Only slots with this outcome.")] = None,
    limit: Limit = 50,
    cursor_: CursorParam = None,
) -> FireList:
    await visible_schedule(scheduler, principal, job_id)
    async with scheduler.engine.connect() as conn:
        rows = await queries.list_fires(
            conn, job_id, before=cursor.decode_pair(cursor_), outcome=outcome, limit=limit + 1
        )
    items = [FireOut.from_row(r) for r in rows[:limit]]
    last = items[-1] if items else None
    next_cursor = cursor.encode_pair(last.nominal_time, last.trigger) if last and len(rows) > limit else None
    return FireList(items=items, next_cursor=next_cursor)


@router.get(
    "/{job_id}/event-fires",
    summary="What events did to a job, newest first",
    response_model=EventFireList,
    responses=problems(404, 422, 503),
)
async def list_event_fires(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    scheduler: SchedulerDep,
    limit: Limit = 50,
    cursor_: CursorParam = None,
) -> EventFireList:
    await visible_schedule(scheduler, principal, job_id)
    async with scheduler.engine.connect() as conn:
        rows = await queries.list_event_fires(conn, job_id, before=cursor.decode_pair(cursor_), limit=limit + 1)
    items = [EventFireOut.from_row(r) for r in rows[:limit]]
    last = items[-1] if items else None
    next_cursor = cursor.encode_pair(last.recorded_at, last.event_id) if last and len(rows) > limit else None
    return EventFireList(items=items, next_cursor=next_cursor)
