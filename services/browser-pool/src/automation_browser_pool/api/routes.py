"""Routes: run a task, fetch artifacts and task results, look at the pool."""

from __future__ import annotations

import re
import uuid

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from automation_browser_pool.api.deps import State
from automation_browser_pool.api.schemas import ArtifactMetaOut, PoolOut
from automation_contracts import BrowserResult, BrowserTask
from automation_core.errors import NotFound
from automation_core.http import current_principal
from automation_core.openapi import problems

router = APIRouter(prefix="/api/v1", dependencies=[Depends(current_principal)])
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
#: The errors of a route that reads the database by id (503: the database cannot be reached).
BY_ID = problems(404, 422, 503)
RUN_TASK = problems(409, 422, 503)
RUN_TASK[409]["description"] = "The task id is running on another replica, which has not recorded its result in time"


@router.post(
    "/tasks",
    tags=["tasks"],
    summary="Run a browser task now and answer its result",
    description=(
        "Runs the task through the same code path as a `browser.task` message: a fresh context of a pooled "
        "browser, the task's timeout for waiting and running. A failure in the page is a 200 with `ok: false`. "
        "A task id answered before gets the stored result again; one still running (a request sent twice) "
        "gets the result of that run."
    ),
    responses=RUN_TASK,
)
async def run_task(task: BrowserTask, state: State) -> BrowserResult:
    return await state.service.answer(task)


@router.get("/tasks/{task_id}", tags=["tasks"], summary="The stored result of a task", responses=BY_ID)
async def get_task(task_id: uuid.UUID, state: State) -> BrowserResult:
    result = await state.repository.find_result(task_id)
    if result is None:
        raise NotFound(f"task {task_id} not found")
    return result


@router.get(
    "/artifacts/{artifact_id}",
    tags=["artifacts"],
    summary="An artifact's bytes (image/png or application/pdf)",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "application/pdf": {}}, "description": "the artifact"},
        **BY_ID,
    },
)
async def get_artifact(artifact_id: uuid.UUID, state: State) -> Response:
    found = await state.repository.artifact_file(artifact_id)
    if found is None:
        raise NotFound(f"artifact {artifact_id} not found")
    filename = UNSAFE_FILENAME.sub("_", found.name).strip("._") or str(artifact_id)
    return Response(
        found.data,
        media_type=found.content_type,
        headers={
            "Content-Disposition": f'inline; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600, immutable",
        },
    )


@router.get("/artifacts/{artifact_id}/meta", tags=["artifacts"], summary="An artifact's metadata", responses=BY_ID)
async def get_artifact_meta(artifact_id: uuid.UUID, state: State) -> ArtifactMetaOut:
    meta = await state.repository.artifact_meta(artifact_id)
    if meta is None:
        raise NotFound(f"artifact {artifact_id} not found")
    return ArtifactMetaOut.of(meta)


@router.get("/pool", tags=["pool"], summary="Browsers, busy contexts and capacity", responses=problems(422))
async def get_pool(state: State) -> PoolOut:
    return PoolOut.of(state.pool.status())
