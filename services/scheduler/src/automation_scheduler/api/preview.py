"""``POST /api/v1/schedules/preview``: next fire times, and for a job how a proposed edit moves them.

Both sides are computed by the code the fire loop uses (:func:`automation_scheduler.domain.compiled.
compile_schedule` over ``automation_schedule``). Times are nominal: the job's jitter is not added.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from automation_contracts import JobSpec
from automation_core.errors import InvalidInput, NotFound
from automation_core.http import CurrentPrincipal
from automation_core.openapi import problems
from automation_db import utcnow
from automation_schedule import GapPolicy, OverlapPolicy, Schedule, ScheduleError, parse_schedule, preview
from automation_scheduler.api.deps import SchedulerDep
from automation_scheduler.api.routes import visible_schedule
from automation_scheduler.api.schemas import PreviewIn, PreviewOut
from automation_scheduler.domain.compiled import compile_schedule

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])
# Field names of the preview body, for ScheduleError.field values that name something else.
PREVIEW_FIELDS = {"after": "from", "now": "from", "duration": "schedule", "gap": "dst_gap", "overlap": "dst_overlap"}
EDITABLE = ("schedule", "timezone", "start_at", "end_at", "dst_gap", "dst_overlap")


def _invalid(exc: ScheduleError) -> InvalidInput:
    field = PREVIEW_FIELDS.get(exc.field, exc.field)
    return InvalidInput(f"{field}: {exc.reason}", field=field)


def _times(schedule: Schedule | None, start: datetime, count: int) -> list[datetime]:
    return [] if schedule is None else preview(schedule, after=start, count=count)


def _diff(current: list[datetime], proposed: list[datetime], count: int) -> tuple[list[datetime], list[datetime]]:
    """Times only one side has, up to where both lists reach (a list shorter than ``count`` has ended)."""
    ends = [times[-1] for times in (current, proposed) if len(times) == count]
    horizon = min(ends) if ends else None
    now_set, new_set = set(current), set(proposed)
    added = [t for t in proposed if t not in now_set and (horizon is None or t <= horizon)]
    removed = [t for t in current if t not in new_set and (horizon is None or t <= horizon)]
    return added, removed


@router.post(
    "/preview",
    summary="Next fire times, or a job's current and proposed ones",
    response_model=PreviewOut,
    responses=problems(404, 422, 503),
)
async def preview_schedule(body: PreviewIn, principal: CurrentPrincipal, scheduler: SchedulerDep) -> PreviewOut:
    start = body.from_ or utcnow()
    if body.job_id is None:
        if body.schedule is None:
            raise InvalidInput("schedule: give a schedule, or a job_id with the fields to change", field="schedule")
        try:
            parsed = parse_schedule(
                body.schedule,
                timezone=body.timezone or "UTC",
                start_at=body.start_at,
                end_at=body.end_at,
                anchor=start,
                gap=GapPolicy(body.dst_gap or "shift"),
                overlap=OverlapPolicy(body.dst_overlap or "first"),
            )
            return PreviewOut(fire_times=preview(parsed, after=start, count=body.count))
        except ScheduleError as exc:
            raise _invalid(exc) from exc
    row = await visible_schedule(scheduler, principal, body.job_id)
    if row.spec is None:
        raise NotFound(f"no schedule for job {body.job_id}")
    spec = JobSpec.model_validate(row.spec)
    updates: dict[str, Any] = {name: getattr(body, name) for name in EDITABLE if name in body.model_fields_set}
    proposed_spec = spec.model_copy(update=updates)
    try:
        current = _times(compile_schedule(spec, row.anchor) if spec.schedule else None, start, body.count)
        proposed_schedule = compile_schedule(proposed_spec, row.anchor) if proposed_spec.schedule else None
        proposed = _times(proposed_schedule, start, body.count)
    except ScheduleError as exc:
        raise _invalid(exc) from exc
    added, removed = _diff(current, proposed, body.count)
    return PreviewOut(fire_times=proposed, job_id=body.job_id, current_fire_times=current, added=added, removed=removed)
