"""Jobs of the caller's account: CRUD, enable/disable, and manual runs."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from automation_core.errors import InvalidInput
from automation_core.openapi import problems
from automation_job_api.api.deps import DEFAULT_LIMIT, CurrentAccount, Cursor, JobApiDep, Limit
from automation_job_api.api.schemas import ExecuteAccepted, ExecuteRequest, JobList, JobOut
from automation_job_api.domain.definitions import JobDefinition

IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
"""An Idempotency-Key: 1 to 255 printable ASCII characters (RFC 9110 field values, without obs-text)."""

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a job (version 1; announces job.created)",
    responses=problems(403, 409, 422, 503),
)
async def create_job(
    definition: JobDefinition, account_id: CurrentAccount, job_api: JobApiDep, response: Response
) -> JobOut:
    job = await job_api.jobs.create(account_id, definition)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job)


@router.get("", summary="List the account's jobs, newest first", responses=problems(403, 422, 503))
async def list_jobs(
    *,
    account_id: CurrentAccount,
    job_api: JobApiDep,
    enabled: Annotated[bool | None, Query(description="Only enabled (true) or disabled (false) jobs.")] = None,
    name: Annotated[str | None, Query(description="Only the job with exactly this name.")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> JobList:
    page = await job_api.jobs.list(account_id, enabled=enabled, name=name, cursor=cursor, limit=limit)
    return JobList(items=[JobOut.model_validate(j) for j in page.items], next_cursor=page.next_cursor)


@router.get("/{job_id}", summary="Read a job", responses=problems(403, 404, 422, 503))
async def get_job(job_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep) -> JobOut:
    return JobOut.model_validate(await job_api.jobs.get(account_id, job_id))


@router.put(
    "/{job_id}",
    summary="Replace a job's definition (new version; announces job.updated)",
    responses=problems(403, 404, 409, 422, 503),
)
async def replace_job(
    job_id: uuid.UUID, definition: JobDefinition, account_id: CurrentAccount, job_api: JobApiDep
) -> JobOut:
    return JobOut.model_validate(await job_api.jobs.replace(account_id, job_id, definition))


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a job (its executions stay readable; announces job.deleted)",
    responses=problems(403, 404, 422, 503),
)
async def delete_job(job_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep) -> None:
    await job_api.jobs.delete(account_id, job_id)


@router.post(
    "/{job_id}/enable",
    summary="Enable the job's schedule (new version unless already enabled)",
    responses=problems(403, 404, 422, 503),
)
async def enable_job(job_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep) -> JobOut:
    return JobOut.model_validate(await job_api.jobs.set_enabled(account_id, job_id, True))


@router.post(
    "/{job_id}/disable",
    summary="Disable the job's schedule (new version unless already disabled); manual runs still work",
    responses=problems(403, 404, 422, 503),
)
async def disable_job(job_id: uuid.UUID, account_id: CurrentAccount, job_api: JobApiDep) -> JobOut:
    return JobOut.model_validate(await job_api.jobs.set_enabled(account_id, job_id, False))


@router.post(
    "/{job_id}/execute",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run the job now (also when disabled); parameters are validated and defaulted",
    description=(
        "With an `Idempotency-Key` header, the job runs once per key: sending the same key again (a retry "
        "after a timeout or a 503) answers with the run it queued the first time, 202 with "
        "`Idempotent-Replayed: true`; the same key with other parameters is a 422 naming `Idempotency-Key`."
    ),
    responses=problems(403, 404, 409, 422, 503),
)
async def execute_job(  # noqa: PLR0917 - FastAPI passes path, body and header as parameters
    job_id: uuid.UUID,
    account_id: CurrentAccount,
    job_api: JobApiDep,
    response: Response,
    body: ExecuteRequest | None = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1 to 255 printable ASCII characters (space to tilde); one run of this job per key.",
        ),
    ] = None,
) -> ExecuteAccepted:
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidInput(
            "Idempotency-Key: must be 1 to 255 printable ASCII characters (space to tilde)", field="Idempotency-Key"
        )
    parameters = body.parameters if body is not None else {}
    queued = await job_api.jobs.execute(account_id, job_id, parameters, idempotency_key=idempotency_key)
    execution_id = queued.execution_id
    response.headers["Location"] = f"/api/v1/executions/{execution_id}"
    if queued.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return ExecuteAccepted(execution_id=execution_id)
