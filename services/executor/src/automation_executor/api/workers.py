"""``GET /api/v1/workers/self``: this replica's id, concurrency, load and capabilities."""

from __future__ import annotations

from fastapi import APIRouter

from automation_core.http import CurrentPrincipal
from automation_core.openapi import problems
from automation_executor.api.deps import ExecutorStateDep
from automation_executor.api.schemas import WorkerOut
from automation_executor.launch import active_command_server, active_fork_server

router = APIRouter(tags=["workers"])


@router.get(
    "/workers/self",
    response_model=WorkerOut,
    summary="This executor replica and its load",
    responses=problems(422, 503),
)
async def worker_self(_principal: CurrentPrincipal, state: ExecutorStateDep) -> WorkerOut:
    pool = state.pool
    forks = active_fork_server()
    return WorkerOut(
        id=pool.worker_id,
        concurrency=pool.concurrency,
        running=pool.running,
        utilization=pool.running / pool.concurrency,
        draining=pool.draining,
        launcher=state.launcher,
        direct_commands=active_command_server() is not None,  # started only with the setting on
        preloaded_handlers=sorted(forks.preloaded_handlers) if forks is not None else [],
        preloaded_step_runners=sorted(forks.preloaded_modules) if forks is not None else [],
        sandbox_available=state.sandbox.available,
        sandbox_problem=state.sandbox.problem,
        workdir_root=state.workdir_root,
        workdir_filesystem=state.workdir_filesystem,
    )
