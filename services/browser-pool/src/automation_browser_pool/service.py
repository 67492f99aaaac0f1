"""Use cases of browser-pool: answer a browser task, and prune old artifacts.

:class:`BrowserTaskService` is the one code path of a task, whether it came over RabbitMQ or HTTP:
a task answered before (a redelivery) gets the stored reply, and one received again while it runs gets
that run's reply (:mod:`automation_browser_pool.claims`); a task naming a refused URL is answered
``ok=false`` without a browser; otherwise it waits for a pool slot (within its timeout), runs in a
fresh context, and its record and artifacts are stored in one transaction before the reply.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from automation_browser_pool import metrics
from automation_browser_pool.claims import LocalClaims, TaskClaims
from automation_browser_pool.db.repository import Pruned, TaskRepository
from automation_browser_pool.domain import RunOutcome, check_task_urls
from automation_browser_pool.pool import BrowserPool, PoolBrowser, PoolClosed, SlotTimeout
from automation_contracts import BROWSER_REPLY_SLACK_SECONDS, BrowserResult, BrowserTask
from automation_core.errors import Conflict
from automation_core.logging import bind_context, get_logger
from automation_db import utcnow

log = get_logger(__name__)
B = TypeVar("B", bound=PoolBrowser)
B_contra = TypeVar("B_contra", bound=PoolBrowser, contravariant=True)


CLAIM_POLL_SECONDS = 0.5
"""How often a task claimed by another replica looks for its result (and for the claim let go)."""
ELSEWHERE_SLACK_SECONDS = 10.0
"""How much longer than the task's timeout it waits for another replica's result before giving up."""


class TaskRunningElsewhere(Conflict):
    """The task is claimed by another replica, which has not recorded its result in time (HTTP 409; a
    message is requeued with backoff, as for any failure)."""


def _retrieve(future: asyncio.Future[BrowserResult]) -> None:
    """Mark a run's failure seen: joining it is optional."""
    if not future.cancelled():
        future.exception()


class Runner(Protocol[B_contra]):
    """Runs a task's actions on a browser (:class:`~automation_browser_pool.runner.TaskRunner`)."""

    async def run(self, browser: B_contra, task: BrowserTask, deadline: float) -> RunOutcome: ...


class BrowserTaskService(Generic[B]):
    """Answers browser tasks with the pool, the runner and the repository."""

    def __init__(
        self, pool: BrowserPool[B], runner: Runner[B], repository: TaskRepository, claims: TaskClaims | None = None
    ) -> None:
        self._pool = pool
        self._runner = runner
        self._repository = repository
        self._claims: TaskClaims = claims or LocalClaims()
        self._running: dict[uuid.UUID, asyncio.Future[BrowserResult]] = {}

    async def answer(self, task: BrowserTask, *, sent_at: datetime | None = None) -> BrowserResult:
        """The ``browser.result`` for ``task`` (stored before it is returned).

        A task received again while it still runs gets that run's result: one running in this process
        is joined, one claimed by another replica is waited for (see :mod:`automation_browser_pool.claims`).
        A request sent at ``sent_at`` (its CloudEvent ``time``) whose caller has stopped waiting (the
        task's timeout and :data:`~automation_contracts.BROWSER_REPLY_SLACK_SECONDS` have passed) is
        answered ``ok: false`` without being run.
        """
        started = time.monotonic()
        bind_context(task_id=task.task_id, execution_id=task.execution_id)
        running = self._running.get(task.task_id)
        if running is not None:
            log.info("browser_task_joins_its_run_in_progress")
            metrics.RECEIVED_AGAIN.labels("running_here").inc()
            return await asyncio.shield(running)
        future: asyncio.Future[BrowserResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._running[task.task_id] = future
        try:
            result = await self._claimed(task, started, sent_at)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._running.pop(task.task_id, None)
        future.set_result(result)
        return result

    async def _claimed(self, task: BrowserTask, started: float, sent_at: datetime | None) -> BrowserResult:
        """Claim the task (waiting while another replica runs it), then answer it once."""
        give_up = started + task.timeout_seconds + ELSEWHERE_SLACK_SECONDS
        waited = False
        while not await self._claims.try_claim(task.task_id):
            if not waited:
                waited = True
                log.info("browser_task_runs_on_another_replica")
                metrics.RECEIVED_AGAIN.labels("running_elsewhere").inc()
            previous = await self._repository.find_result(task.task_id)
            if previous is not None:
                return previous
            if time.monotonic() >= give_up:
                raise TaskRunningElsewhere(
                    f"task {task.task_id} is claimed by another browser-pool replica, which has not recorded "
                    f"its result within the task's {task.timeout_seconds:g}s timeout (+{ELSEWHERE_SLACK_SECONDS:g}s)"
                )
            await asyncio.sleep(CLAIM_POLL_SECONDS)
        try:
            previous = await self._repository.find_result(task.task_id)
            if previous is not None:
                log.info("browser_task_already_answered", ok=previous.ok)
                if not waited:
                    metrics.RECEIVED_AGAIN.labels("answered").inc()
                return previous
            return await self._run_and_record(task, started, sent_at)
        finally:
            try:
                await self._claims.release(task.task_id)
            except Exception as exc:  # noqa: BLE001 - the result is recorded; the claim went with its connection
                log.warning("browser_task_claim_not_released", error=repr(exc))

    async def _run_and_record(self, task: BrowserTask, started: float, sent_at: datetime | None) -> BrowserResult:
        outcome = self._expired(task, sent_at) or await self._run(task, started)
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

    @staticmethod
    def _expired(task: BrowserTask, sent_at: datetime | None) -> RunOutcome | None:
        """A refusal when no one waits for the task's result any more (it waited in the queue while
        browser-pool was down or busy); None when it may run."""
        if sent_at is None:
            return None
        waited = (utcnow() - sent_at).total_seconds()
        if waited <= task.timeout_seconds + BROWSER_REPLY_SLACK_SECONDS:
            return None
        log.warning("browser_task_expired", waited_seconds=round(waited, 1))
        metrics.EXPIRED.inc()
        return RunOutcome.refused(
            f"not run: the task was sent {waited:.0f}s ago, and its caller stops waiting after the task's "
            f"{task.timeout_seconds:g}s timeout and {BROWSER_REPLY_SLACK_SECONDS:g}s more"
        )

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
