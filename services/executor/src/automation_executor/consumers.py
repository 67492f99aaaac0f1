"""The ``run.requested`` handler: claim the attempt, run it, record the outcome, then ack.

Every delivery ends one way. An unreadable request is dead-lettered. A duplicate (the attempt's outcome
is recorded; or a live lease holder runs it) is acknowledged without running anything; so is the
request of an attempt whose holder vanished (it is recorded ``lost`` on the spot, and its retry
follows through the delay queues). A request for a cancelled execution is recorded ``cancelled`` and
acknowledged. A request over its job's ``max_concurrency`` goes back through the shortest delay queue
(not an attempt). Otherwise the steps run in a child process, in a task of their own (``run_task``)
that a cancellation or a lost lease can stop, while their output streams as ``execution.log``; the
outcome is committed together with what follows, and only then is the message acknowledged.

During shutdown a new delivery is handed back unacknowledged, and an execution cancelled after the
grace period kills its child, hands its attempt back (``released``) and its message back too: both
are delivered again and run again as the same attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from automation_contracts import CloudEvent, ContractError, RunRequested
from automation_core.logging import bind_context, get_logger
from automation_executor import metrics
from automation_executor.domain.backoff import round_to_ladder
from automation_executor.domain.outcome import RunOutcome
from automation_executor.joblimits import Runner
from automation_executor.launch import CURRENT_CHILD
from automation_executor.leases import count_ending
from automation_executor.logstream import LogSink, LogStreamer
from automation_executor.pool import PoolDraining, Slot, WorkerPool
from automation_executor.retry import RetryRoutes
from automation_executor.sandbox import SandboxStatus, sandbox_refusal
from automation_executor.service import Begin, Finished
from automation_executor.settings import ExecutorSettings
from automation_messaging import DeadLetter, Delivery
from automation_messaging.topology import RETRY

log = get_logger(__name__)
RERUN_SEQ_STRIDE = 1_000_000
"""A rerun of a handed-back attempt starts its log ``seq`` at ``run_number * stride``: no collisions."""


class Attempts(Protocol):
    """The attempt use cases the handler needs (:class:`~automation_executor.service.AttemptService`)."""

    lease_seconds: float

    async def begin(self, request: RunRequested) -> Begin: ...

    async def finish(
        self, request: RunRequested, begun: Begin, outcome: RunOutcome, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished: ...

    async def finish_cancelled(
        self, request: RunRequested, begun: Begin, reason: str, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished: ...

    async def release(self, request: RunRequested, begun: Begin) -> bool: ...


class CommandPublisher(Protocol):
    """What the handler publishes with (:class:`automation_messaging.Publisher` in the service)."""

    async def publish(
        self, event: CloudEvent, *, exchange: str, routing_key: str | None = None, priority: int | None = None
    ) -> None: ...


class RunRequestHandler:
    """Handles deliveries from ``executor.runs``."""

    def __init__(
        self,
        *,
        settings: ExecutorSettings,
        service: Attempts,
        runner: Runner,
        pool: WorkerPool,
        publisher: CommandPublisher,
        retry_routes: RetryRoutes,
        sandbox: SandboxStatus | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._runner = runner
        self._pool = pool
        self._publisher = publisher
        self._routes = retry_routes
        self._sandbox = sandbox or SandboxStatus(None)

    async def handle(self, event: CloudEvent, delivery: Delivery) -> CloudEvent | None:
        """The consumer's handler (returns nothing: there is no reply)."""
        try:
            request = delivery.parse(event, RunRequested)
        except ContractError as exc:
            metrics.DEAD_LETTERS.labels("invalid_request").inc()
            raise DeadLetter(f"invalid run.requested: {exc}") from exc
        bind_context(execution_id=request.execution_id, job_id=request.job_id, attempt=request.attempt)
        existing = self._pool.get(request.execution_id, request.attempt)
        if existing is not None:
            log.info("duplicate_delivery_waits_for_local_run")
            await existing.done.wait()  # its outcome is committed (or it was handed back) when done
            return None
        try:
            with self._pool.slot(request.execution_id, request.attempt, request.job_id) as slot:
                await self._claim_and_run(event, request, slot)
        except PoolDraining:
            log.info("run_handed_back_during_shutdown")
            raise asyncio.CancelledError("executor is shutting down") from None
        except asyncio.CancelledError:
            log.warning("execution_cancelled_handed_back")
            raise
        return None

    async def _claim_and_run(self, event: CloudEvent, request: RunRequested, slot: Slot) -> None:
        slot.lease_deadline = time.monotonic() + self._service.lease_seconds
        begun = await self._service.begin(request)
        if begun.action in ("duplicate", "in_progress"):
            log.info(f"run_request_{begun.action}_acked", status=begun.status, worker=begun.previous_worker)
        elif begun.action == "reaped":
            assert begun.ending is not None
            count_ending(begun.ending)
            log.warning(
                "attempt_lease_expired",
                worker=begun.previous_worker,
                recorded=begun.status,
                will_retry=begun.ending.will_retry,
                dead_letter=begun.ending.dead_letter,
            )
        elif begun.action == "cancelled":
            metrics.EXECUTIONS.labels("cancelled").inc()
            metrics.CANCELLATIONS.labels("before_start").inc()
            log.info("cancelled_run_dropped", reason=begun.reason)
        elif begun.action == "throttled":
            await self._throttle(event, request)
        else:
            try:
                await self._run(request, begun, slot)
            except asyncio.CancelledError:
                await asyncio.shield(self._hand_back(request, begun))
                raise

    async def _throttle(self, event: CloudEvent, request: RunRequested) -> None:
        delay = round_to_ladder(self._settings.executor_throttle_delay_seconds)
        await self._publisher.publish(
            event, exchange=RETRY, routing_key=self._routes[delay], priority=request.job.priority
        )
        metrics.THROTTLED.inc()
        log.info("run_over_job_concurrency_requeued", max_concurrency=request.job.max_concurrency, delay_seconds=delay)

    async def _hand_back(self, request: RunRequested, begun: Begin) -> None:
        try:
            released = await self._service.release(request, begun)
        except Exception as exc:  # noqa: BLE001 - then its lease expires and it is recorded lost
            log.warning("attempt_hand_back_failed", error=repr(exc))
            return
        log.info("attempt_handed_back", released=released)

    async def _run(self, request: RunRequested, begun: Begin, slot: Slot) -> None:
        assert begun.started_at is not None
        s = self._settings
        slot.run_id = begun.run_id  # from now on the heartbeat renews its lease
        if begun.run_number == 0:
            metrics.QUEUE_WAIT.observe(max((begun.started_at - request.requested_at).total_seconds(), 0.0))
        log.info("execution_started", worker=self._pool.worker_id, trigger=request.trigger, run=begun.run_number)
        clock = time.perf_counter()
        async with LogStreamer(
            self._publisher,
            request,
            seq_start=begun.run_number * RERUN_SEQ_STRIDE,
            max_bytes=s.executor_max_log_bytes,
            max_line_bytes=s.executor_max_line_bytes,
            batch_seconds=s.executor_log_batch_seconds,
            batch_entries=s.executor_log_batch_entries,
        ) as logs:
            attempt = request.attempt
            if begun.run_number:
                logs.add(
                    "system", None, f"attempt {attempt} was handed back by {begun.previous_worker}; running it again"
                )
            logs.add("system", None, f"attempt {attempt} started on {self._pool.worker_id}")
            outcome = await self._execute(request, slot, logs)
            duration = time.perf_counter() - clock
            if outcome is None:
                summary = f"attempt {attempt} stopped after {duration:.2f}s: {slot.stop_reason}"
            else:
                summary = f"attempt {attempt} {outcome.status.replace('_', ' ')} after {duration:.2f}s"
                summary += f": {outcome.error}" if outcome.error else ""
            if slot.stop_kind == "cancel":
                summary = f"attempt {attempt} cancelled after {duration:.2f}s: {slot.stop_reason}"
            logs.add("system", None, summary, datetime.now(UTC))
            rest = await logs.rest()  # recorded with the outcome (see automation_executor.logstream)
        metrics.EXECUTION_DURATION.observe(duration)
        recorded = False
        try:
            recorded = await self._record(request, begun, slot, outcome, duration, logs=rest)
        finally:
            if not recorded:
                await logs.publish_events(rest)

    async def _execute(self, request: RunRequested, slot: Slot, logs: LogSink) -> RunOutcome | None:
        """Run the steps in their own task; None when a cancellation or a lost lease stopped them."""
        refusal = sandbox_refusal(request.job.steps, self._sandbox)
        if refusal is not None:
            logs.add("system", None, refusal)
            return RunOutcome(status="failed", error=refusal, permanent=True)
        if slot.stop_kind is not None:
            return None
        slot.logs = logs
        token = CURRENT_CHILD.set(slot.child)
        try:
            run_task: asyncio.Task[RunOutcome] = asyncio.create_task(
                self._runner.run(request, logs), name=f"run-{request.execution_id}-{request.attempt}"
            )
        finally:
            CURRENT_CHILD.reset(token)
        slot.run_task = run_task
        try:
            return await run_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the handler itself is cancelled: shutdown
            return None

    async def _record(
        self,
        request: RunRequested,
        begun: Begin,
        slot: Slot,
        outcome: RunOutcome | None,
        duration: float,
        *,
        logs: list[CloudEvent],
    ) -> bool:
        """Record the run's outcome with the last ``logs`` batches; whether it was (and they with it)."""
        if slot.stop_kind == "lease_lost":
            log.warning("run_stopped_lease_lost", reason=slot.stop_reason, duration_seconds=round(duration, 3))
            return False
        if slot.stop_kind == "cancel":
            finished = await self._service.finish_cancelled(request, begun, slot.stop_reason or "cancelled", logs=logs)
            status = "cancelled"
        else:
            assert outcome is not None
            finished = await self._service.finish(request, begun, outcome, logs=logs)
            status = outcome.status
        if not finished.recorded:
            log.warning("attempt_superseded_outcome_discarded", outcome=status)
            return False
        metrics.EXECUTIONS.labels(status).inc()
        if status == "cancelled":
            metrics.CANCELLATIONS.labels("running").inc()
        if finished.will_retry:
            metrics.RETRIES.inc()
        if finished.dead_letter is not None:
            metrics.DEAD_LETTERS.labels(finished.dead_letter).inc()
        log.info(
            "execution_finished",
            outcome=status,
            exit_code=outcome.exit_code if outcome is not None else None,
            duration_seconds=round(duration, 3),
            will_retry=finished.will_retry,
            retry_in_seconds=finished.delay_seconds,
            dead_letter=finished.dead_letter,
        )
        return True
