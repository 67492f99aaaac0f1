"""Use cases of browser-pool: answer a browser task, and prune old artifacts.

:class:`BrowserTaskService` is the one code path of a task, whether it came over RabbitMQ or HTTP:
a task answered before (a redelivery) gets the stored reply; a task naming a refused URL is answered
``ok=false`` without a browser; otherwise it waits for a pool slot (within its timeout), runs in a
fresh context, and its record and artifacts are stored in one transaction before the reply.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from automation_browser_pool import metrics
from automation_browser_pool.db.repository import Pruned, TaskRepository
from automation_browser_pool.domain import RunOutcome, check_task_urls
from automation_browser_pool.pool import BrowserPool, PoolBrowser, PoolClosed, SlotTimeout
from automation_contracts import BrowserResult, BrowserTask
from automation_core.logging import bind_context, get_logger
from automation_db import utcnow

log = get_logger(__name__)
B = TypeVar("B", bound=PoolBrowser)
B_contra = TypeVar("B_contra", bound=PoolBrowser, contravariant=True)


class Runner(Protocol[B_contra]):
    """Runs a task's actions on a browser (:class:`~automation_browser_pool.runner.TaskRunner`)."""

    async def run(self, browser: B_contra, task: BrowserTask, deadline: float) -> RunOutcome: ...


class BrowserTaskService(Generic[B]):
    """Answers browser tasks with the pool, the runner and the repository."""

    def __init__(self, pool: BrowserPool[B], runner: Runner[B], repository: TaskRepository) -> None:
        self._pool = pool
        self._runner = runner
        self._repository = repository

    async def answer(self, task: BrowserTask) -> BrowserResult:
        """The ``browser.result`` for ``task`` (stored before it is returned)."""
        started = time.monotonic()
        bind_context(task_id=task.task_id, execution_id=task.execution_id)
        previous = await self._repository.find_result(task.task_id)
        if previous is not None:
            log.info("browser_task_already_answered", ok=previous.ok)
            return previous
        outcome = await self._run(task, started)
        duration = time.monotonic() - started
        result = await self._repository.record(task, outcome, duration)
        outcome_label = "ok" if result.ok else "error"
        metrics.TASKS.labels(outcome_label).inc()
        metrics.TASK_DURATION.observe(duration)
        log.info(
            "browser_task_answered",
            ok=result.ok,
            error=result.error,
            artifacts=len(result.artifacts),
            duration_ms=round(duration * 1000, 1),
        )
        return result

    async def _run(self, task: BrowserTask, started: float) -> RunOutcome:
        refusal = check_task_urls(task)
        if refusal is not None:
            return RunOutcome.refused(refusal)
        deadline = started + task.timeout_seconds
        try:
            async with self._pool.slot(timeout=max(deadline - time.monotonic(), 0.0)) as browser:
                return await self._runner.run(browser, task, deadline)
        except SlotTimeout:
            return RunOutcome.refused(f"no browser became free within the task's {task.timeout_seconds:g}s timeout")
        except PoolClosed:
            return RunOutcome.refused("browser-pool is shutting down")


class ArtifactJanitor:
    """Deletes artifacts and task records older than the retention period, now and periodically."""

    def __init__(self, repository: TaskRepository, *, retention: timedelta, interval: float) -> None:
        self._repository = repository
        self._retention = retention
        self._interval = interval

    async def prune(self, now: datetime | None = None) -> Pruned:
        """One cleanup: everything created before ``now - retention``."""
        pruned = await self._repository.prune((now or utcnow()) - self._retention)
        metrics.ARTIFACTS_DELETED.inc(pruned.artifacts)
        if pruned.artifacts or pruned.tasks:
            log.info("artifacts_pruned", artifacts=pruned.artifacts, tasks=pruned.tasks)
        return pruned

    async def run_forever(self) -> None:
        """Prune every ``interval`` seconds until cancelled; a failed round is logged and retried next time."""
        while True:
            try:
                await self.prune()
            except Exception as exc:
                log.warning("artifact_prune_failed", error=repr(exc), exc_info=True)
            await asyncio.sleep(self._interval)
