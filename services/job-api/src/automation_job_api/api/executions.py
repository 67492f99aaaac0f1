"""Executions of the caller's account (the read model), their logs (followed live too), cancellation."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse

from automation_core.openapi import problems
from automation_job_api.api.deps import DEFAULT_LIMIT, CurrentAccount, Cursor, JobApiDep, Limit
from automation_job_api.api.schemas import CancelAccepted, CancelRequest, ExecutionList, ExecutionOut
from automation_job_api.domain.executions import Status, TriggerName
from automation_job_api.domain.sse import parse_last_event_id

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])
EVENT_STREAM = "text/event-stream"


@router.get("", summary="List the account's executions, newest first", responses=problems(403, 422, 503))
async def list_executions(
    *,
    account_id: CurrentAccount,
    job_api: JobApiDep,
    job_id: Annotated[uuid.UUID | None, Query(description="Only this job's executions.")] = None,
    status: Annotated[Status | None, Query(description="Only executions in this status.")] = None,
    trigger: Annotated[TriggerName | None, Query(description="Only executions started this way.")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ExecutionList:
    page = await job_api.executions.list(
        account_id, job_id=job_id, status=status, trigger=trigger, cursor=cursor, limit=limit
    )
    return ExecutionList(items=[ExecutionOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor)


@router.get("/{execution_id}", summary="Read an execution", responses=problems(403, 404, 422, 503))
async def get_execution(execution_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep) -> ExecutionOut:
    return ExecutionOut.model_validate(await job_api.executions.get(account_id, execution_id))


@router.get(
    "/{execution_id}/logs",
    summary="The execution's log: text, or with follow=true a live server-sent event stream",
    description="Without `follow`: the whole log as text, `<ts> <stream> [<step>] <text>` per line, by attempt. "
    "With `follow=true`: `text/event-stream` with `event: log` (id `<attempt>:<seq>`, one per stored batch), "
    "`event: status` on each status change, `: keepalive` comments, and `event: end` once the execution is "
    "finished. Send `Last-Event-ID: <attempt>:<seq>` to resume after a batch.",
    response_class=PlainTextResponse,
    response_model=None,
    responses={
        200: {"content": {"text/plain": {}, EVENT_STREAM: {}}, "description": "The log text, or its live stream."},
        **problems(403, 404, 422, 503),
    },
)
async def get_execution_logs(
    execution_id: uuid.UUID,
    account_id: CurrentAccount,
    job_api: JobApiDep,
    follow: Annotated[bool, Query(description="Stream the log live (server-sent events).")] = False,
    last_event_id: Annotated[
        str | None, Header(description="With follow: resume after this event id (<attempt>:<seq>).")
    ] = None,
) -> Response:
    if not follow:
        return PlainTextResponse(await job_api.executions.log_text(account_id, execution_id))
    after = parse_last_event_id(last_event_id)
    await job_api.executions.get(account_id, execution_id)
    return StreamingResponse(
        job_api.logs.stream(execution_id, after),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/{execution_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel a queued or running execution (execution.cancel to every executor)",
    responses=problems(403, 404, 409, 422, 503),
)
async def cancel_execution(
    execution_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep, body: CancelRequest | None = None
) -> CancelAccepted:
    reason = (body or CancelRequest()).reason
    row = await job_api.executions.cancel(account_id, execution_id, reason)
    assert row.cancel_requested_at is not None  # set by cancel()
    return CancelAccepted(
        execution_id=row.id,
        status=row.status,
        cancel_requested_at=row.cancel_requested_at,
    )
