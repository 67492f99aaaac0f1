"""The ``run.requested`` handler: claim the attempt, run it, record the outcome, then ack.

Every delivery ends one way. An unreadable request is dead-lettered. A duplicate (the attempt is
finished, or another live holder runs it) is acknowledged without running anything. Otherwise the
steps run in a child process while their output streams as ``execution.log``, the outcome is committed
together with its event (and the next attempt's request when a retry is due), and only then is the
message acknowledged. During shutdown a new delivery is handed back unacknowledged, and an execution
cancelled after the grace period kills its child and is handed back too: both are delivered again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

from automation_contracts import CloudEvent, ContractError, RunRequested, parse_data
from automation_core.logging import bind_context, get_logger
from automation_executor import metrics
from automation_executor.domain.outcome import RunOutcome
from automation_executor.logstream import EventPublisher, LogSink, LogStreamer
from automation_executor.pool import PoolDraining, WorkerPool
from automation_executor.service import Begin, Finished
from automation_executor.settings import ExecutorSettings
from automation_messaging import DeadLetter, Delivery

log = get_logger(__name__)
LOST_RUN_SEQ_STRIDE = 1_000_000
"""A run after a lost one starts its log ``seq`` at ``lost_count * stride`` so its batches never collide."""


class Attempts(Protocol):
    """The attempt use cases the handler needs (:class:`~automation_executor.service.AttemptService`)."""

    async def begin(self, request: RunRequested, *, redelivered: bool) -> Begin: ...

    async def finish(self, request: RunRequested, begun: Begin, outcome: RunOutcome) -> Finished: ...


class Runner(Protocol):
    """Runs an execution's steps once (:class:`~automation_executor.runner.ChildRunner`)."""

    async def run(self, request: RunRequested, logs: LogSink) -> RunOutcome: ...


class RunRequestHandler:
    """Handles deliveries from ``executor.runs``."""

    def __init__(
        self,
        *,
        settings: ExecutorSettings,
        service: Attempts,
        runner: Runner,
        pool: WorkerPool,
        publisher: EventPublisher,
    ) -> None:
        self._settings = settings
        self._service = service
        self._runner = runner
        self._pool = pool
        self._publisher = publisher

    async def handle(self, event: CloudEvent, delivery: Delivery) -> CloudEvent | None:
        """The consumer's handler (returns nothing: there is no reply)."""
        try:
            request = parse_data(event, RunRequested)
        except ContractError as exc:
            raise DeadLetter(f"invalid run.requested: {exc}") from exc
        bind_context(execution_id=request.execution_id, job_id=request.job_id, attempt=request.attempt)
        existing = self._pool.get(request.execution_id, request.attempt)
        if existing is not None:
            log.info("duplicate_delivery_waits_for_local_run")
            await existing.done.wait()  # its outcome is committed (or it was handed back) when done
            return None
        try:
            with self._pool.slot(request.execution_id, request.attempt, request.job_id):
                await self._claim_and_run(request, redelivered=bool(delivery.message.redelivered))
        except PoolDraining:
            log.info("run_handed_back_during_shutdown")
            raise asyncio.CancelledError("executor is shutting down") from None
        except asyncio.CancelledError:
            log.warning("execution_cancelled_handed_back")
            raise
        return None

    async def _claim_and_run(self, request: RunRequested, *, redelivered: bool) -> None:
        begun = await self._service.begin(request, redelivered=redelivered)
        if begun.action == "duplicate":
            log.info("duplicate_run_request_acked", status=begun.status, worker=begun.previous_worker)
            return
        if begun.action == "in_progress":
            log.info("run_request_in_progress_elsewhere_acked", worker=begun.previous_worker)
            return
        assert begun.started_at is not None
        if begun.lost_count:
            metrics.EXECUTIONS.labels("lost").inc()
            log.warning("attempt_lost_rerun", lost_count=begun.lost_count, previous_worker=begun.previous_worker)
        else:
            wait = (begun.started_at - request.requested_at).total_seconds()
            metrics.QUEUE_WAIT.observe(max(wait, 0.0))
        log.info("execution_started", worker=self._pool.worker_id, trigger=request.trigger)
        finished = await self._run(request, begun)
        if not finished.recorded:
            log.warning("attempt_superseded_outcome_discarded")

    async def _run(self, request: RunRequested, begun: Begin) -> Finished:
        s = self._settings
        clock = time.perf_counter()
        async with LogStreamer(
            self._publisher,
            request,
            seq_start=begun.lost_count * LOST_RUN_SEQ_STRIDE,
            max_bytes=s.executor_max_log_bytes,
            max_line_bytes=s.executor_max_line_bytes,
            batch_seconds=s.executor_log_batch_seconds,
            batch_entries=s.executor_log_batch_entries,
        ) as logs:
            if begun.lost_count:
                logs.add("system", None, f"previous run of attempt {request.attempt} was lost; running it again")
            logs.add("system", None, f"attempt {request.attempt} started on {self._pool.worker_id}")
            outcome = await self._runner.run(request, logs)
            duration = time.perf_counter() - clock
            summary = f"attempt {request.attempt} {outcome.status.replace('_', ' ')} after {duration:.2f}s"
            logs.add("system", None, summary + (f": {outcome.error}" if outcome.error else ""), datetime.now(UTC))
        metrics.EXECUTION_DURATION.observe(duration)
        finished = await self._service.finish(request, begun, outcome)
        if finished.recorded:
            metrics.EXECUTIONS.labels(outcome.status).inc()
            if finished.will_retry:
                metrics.RETRIES.inc()
            log.info(
                "execution_finished",
                outcome=outcome.status,
                exit_code=outcome.exit_code,
                duration_seconds=round(duration, 3),
                will_retry=finished.will_retry,
                retry_in_seconds=finished.delay_seconds,
            )
        return finished
