"""Executions of the caller's account (the read model) and their logs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from automation_job_api.api.deps import DEFAULT_LIMIT, CurrentAccount, Cursor, JobApiDep, Limit
from automation_job_api.api.problems import problems
from automation_job_api.api.schemas import ExecutionList, ExecutionOut
from automation_job_api.domain.executions import Status, TriggerName

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])


@router.get("", summary="List the account's executions, newest first", responses=problems(403, 422))
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


@router.get("/{execution_id}", summary="Read an execution", responses=problems(403, 404, 422))
async def get_execution(execution_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep) -> ExecutionOut:
    return ExecutionOut.model_validate(await job_api.executions.get(account_id, execution_id))


@router.get(
    "/{execution_id}/logs",
    summary="The execution's log as text: '<ts> <stream> [<step>] <text>' per line, by attempt",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "The log text."}, **problems(403, 404, 422)},
)
async def get_execution_logs(execution_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep) -> str:
    return await job_api.executions.log_text(account_id, execution_id)
