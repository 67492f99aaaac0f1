"""``/api/v1/schedules``: list, get, fires of a job, and fire-time preview.

An account sees only its own jobs' schedules (another account's is a 404); the admin sees all.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from automation_core.auth import Principal
from automation_core.errors import InvalidInput, NotFound
from automation_core.http import CurrentPrincipal, current_principal
from automation_db import utcnow
from automation_schedule import ScheduleError, parse_schedule, preview
from automation_scheduler.api import cursor
from automation_scheduler.api.deps import SchedulerDep
from automation_scheduler.api.schemas import (
    FireList,
    FireOut,
    PreviewIn,
    PreviewOut,
    ScheduleList,
    ScheduleOut,
    ScheduleStateName,
)
from automation_scheduler.db import queries
from automation_scheduler.db.tables import SCHEDULE_STATES

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])
Limit = Annotated[int, Query(ge=1, le=200, description="Page size (at most 200).")]
CursorParam = Annotated[str | None, Query(alias="cursor", description="next_cursor of the previous page.")]
# Field names of the preview body, for ScheduleError.field values that name something else.
PREVIEW_FIELDS = {"after": "from", "now": "from", "duration": "schedule"}


def _scope(principal: Principal) -> uuid.UUID | None:
    """The account whose schedules the caller may see; None for the admin (all)."""
    return None if principal.is_admin else principal.require_account()


@router.get("", summary="List schedules", response_model=ScheduleList)
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
            conn, account_id=_scope(principal), states=states, after=cursor.decode_uuid(cursor_), limit=limit + 1
        )
    items = [ScheduleOut.from_row(r) for r in rows[:limit]]
    next_cursor = cursor.encode(str(items[-1].job_id)) if len(rows) > limit else None
    return ScheduleList(items=items, next_cursor=next_cursor)


async def _visible_schedule(scheduler: SchedulerDep, principal: Principal, job_id: uuid.UUID) -> ScheduleOut:
    async with scheduler.engine.connect() as conn:
        row = await queries.get_schedule(conn, job_id)
    account = _scope(principal)
    if row is None or (account is not None and row.account_id != account):
        raise NotFound(f"no schedule for job {job_id}")
    return ScheduleOut.from_row(row)


@router.get("/{job_id}", summary="A job's schedule", response_model=ScheduleOut)
async def get_schedule(job_id: uuid.UUID, principal: CurrentPrincipal, scheduler: SchedulerDep) -> ScheduleOut:
    return await _visible_schedule(scheduler, principal, job_id)


@router.get("/{job_id}/fires", summary="A job's recent fires, newest first", response_model=FireList)
async def list_fires(
    job_id: uuid.UUID,
    principal: CurrentPrincipal,
    scheduler: SchedulerDep,
    limit: Limit = 50,
    cursor_: CursorParam = None,
) -> FireList:
    await _visible_schedule(scheduler, principal, job_id)
    async with scheduler.engine.connect() as conn:
        rows = await queries.list_fires(conn, job_id, before=cursor.decode_time(cursor_), limit=limit + 1)
    items = [FireOut.from_row(r) for r in rows[:limit]]
    next_cursor = cursor.encode(items[-1].nominal_time.isoformat()) if len(rows) > limit else None
    return FireList(items=items, next_cursor=next_cursor)


@router.post(
    "/preview",
    summary="The next fire times of a schedule",
    response_model=PreviewOut,
    dependencies=[Depends(current_principal)],
)
async def preview_schedule(body: PreviewIn) -> PreviewOut:
    start = body.from_ or utcnow()
    try:
        parsed = parse_schedule(body.schedule, timezone=body.timezone, anchor=start)
        times = preview(parsed, after=start, count=body.count)
    except ScheduleError as exc:
        raise InvalidInput(exc.reason, field=PREVIEW_FIELDS.get(exc.field, exc.field)) from exc
    return PreviewOut(fire_times=times)
