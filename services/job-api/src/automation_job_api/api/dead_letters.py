"""The platform's dead letters (admin only): list, inspect, requeue, delete, purge."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from automation_contracts.primitives import Instant
from automation_core.http import CurrentPrincipal
from automation_core.openapi import problems
from automation_job_api.api.dead_letter_schemas import (
    DeadLetterDetail,
    DeadLetterList,
    DeadLetterOut,
    PurgeRequest,
    PurgeResult,
)
from automation_job_api.api.deps import DEFAULT_LIMIT, Cursor, JobApiDep, Limit
from automation_job_api.service.dead_letters import LetterFilter

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead-letters"])


@router.get("", summary="List dead letters, newest first (admin)", responses=problems(403, 422, 503))
async def list_dead_letters(
    *,
    principal: CurrentPrincipal,
    job_api: JobApiDep,
    original_queue: Annotated[str | None, Query(description="Only letters dead-lettered from this queue.")] = None,
    routing_key: Annotated[str | None, Query(description="Only letters with this original routing key.")] = None,
    since: Annotated[Instant | None, Query(description="Only letters dead-lettered at or after this time.")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> DeadLetterList:
    letters = LetterFilter(original_queue=original_queue, routing_key=routing_key, since=since)
    page = await job_api.dead_letters.list(principal, letters, cursor=cursor, limit=limit)
    return DeadLetterList(items=[DeadLetterOut.of(row) for row in page.items], next_cursor=page.next_cursor)


@router.get(
    "/{letter_id}",
    summary="Read a dead letter with its headers and body (as text and base64) (admin)",
    responses=problems(403, 404, 422, 503),
)
async def get_dead_letter(letter_id: uuid.UUID, principal: CurrentPrincipal, job_api: JobApiDep) -> DeadLetterDetail:
    return DeadLetterDetail.of(await job_api.dead_letters.get(principal, letter_id))


@router.post(
    "/{letter_id}/requeue",
    summary="Publish the letter again to its original exchange and routing key, confirmed (admin)",
    responses=problems(403, 404, 409, 422, 503),
)
async def requeue_dead_letter(letter_id: uuid.UUID, principal: CurrentPrincipal, job_api: JobApiDep) -> DeadLetterOut:
    return DeadLetterOut.of(await job_api.dead_letters.requeue(principal, letter_id))


@router.delete(
    "/{letter_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Forget a dead letter (admin)",
    responses=problems(403, 404, 422, 503),
)
async def delete_dead_letter(letter_id: uuid.UUID, principal: CurrentPrincipal, job_api: JobApiDep) -> None:
    await job_api.dead_letters.delete(principal, letter_id)


@router.post(
    "/purge",
    summary="Forget every dead letter, or those of one original queue and/or dead-lettered before a time (admin)",
    responses=problems(403, 422, 503),
)
async def purge_dead_letters(
    principal: CurrentPrincipal, job_api: JobApiDep, body: PurgeRequest | None = None
) -> PurgeResult:
    request = body or PurgeRequest()
    letters = LetterFilter(original_queue=request.original_queue, before=request.before)
    return PurgeResult(purged=await job_api.dead_letters.purge(principal, letters))
