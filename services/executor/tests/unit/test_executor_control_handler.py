"""The handler's control paths with hand-written fakes: throttling, cancellation, lost leases, refusals, hand-back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from automation_contracts import CloudEvent, RunRequested, build_event
from automation_executor.consumers import RunRequestHandler
from automation_executor.domain.backoff import LADDER_SECONDS
from automation_executor.domain.outcome import RunOutcome
from automation_executor.launch import CURRENT_CHILD
from automation_executor.logstream import LogSink
from automation_executor.pool import WorkerPool
from automation_executor.sandbox import SandboxStatus
from automation_executor.service import Begin, Finished
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import run_request_data
from automation_messaging import Delivery


@dataclass
class Attempts:
    """Attempt use cases in memory; ``on_begin`` runs inside begin (to race it)."""

    action: str = "run"
    lease_seconds: float = 30.0
    on_begin: Callable[[RunRequested], None] | None = None
    finished: list[RunOutcome] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    released: list[uuid.UUID] = field(default_factory=list)

    async def begin(self, request: RunRequested) -> Begin:
        if self.on_begin is not None:
            self.on_begin(request)
        if self.action != "run":
            return Begin(self.action, reason="asked")  # type: ignore[arg-type]
        return Begin("run", run_id=uuid.uuid4(), started_at=datetime.now(UTC))

    async def finish(
        self, request: RunRequested, begun: Begin, outcome: RunOutcome, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished:
        self.finished.append(outcome)
        return Finished(recorded=True, dead_letter="final_failure" if outcome.permanent else None)

    async def finish_cancelled(
        self, request: RunRequested, begun: Begin, reason: str, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished:
        self.cancelled.append(reason)
        return Finished(recorded=True)

    async def release(self, request: RunRequested, begun: Begin) -> bool:
        assert begun.run_id is not None
        self.released.append(begun.run_id)
        return True


@dataclass
class Runner:
    """Waits until released (or forever); records whether the child handle was reachable."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    runs: int = 0
    saw_handle: bool = False

    async def run(self, request: RunRequested, logs: LogSink) -> RunOutcome:
        self.runs += 1
        self.saw_handle = CURRENT_CHILD.get() is not None
        self.started.set()
        await self.gate.wait()
        return RunOutcome(status="succeeded", exit_code=0)


@dataclass
class Published:
    event: CloudEvent
    exchange: str
    routing_key: str | None
    priority: int | None


class Publisher:
    def __init__(self) -> None:
        self.sent: list[Published] = []

    async def publish(
        self, event: CloudEvent, *, exchange: str, routing_key: str | None = None, priority: int | None = None
    ) -> None:
        self.sent.append(Published(event, exchange, routing_key, priority))


@dataclass
class Message:
    redelivered: bool = False
    headers: dict[str, Any] = field(default_factory=dict)


def _delivery() -> Delivery:
    return Delivery(Message(), "executor.runs", "run.requested", 0)  # type: ignore[arg-type]


def _event(config: dict[str, Any] | None = None, **kwargs: Any) -> CloudEvent:
    step = {"name": "s", "type": "shell", "config": config or {"command": ["true"]}}
    data = run_request_data([step], **kwargs)
    data["job"]["priority"] = 7
    return build_event("run.requested", source="/tests", data=json.loads(json.dumps(data)))


def _execution_id(event: CloudEvent) -> uuid.UUID:
    assert isinstance(event.data, dict)
    return uuid.UUID(event.data["execution_id"])


def _handler(
    attempts: Attempts, runner: Runner, *, sandbox: SandboxStatus | None = None
) -> tuple[RunRequestHandler, WorkerPool, Publisher]:
    pool = WorkerPool("w", 4)
    publisher = Publisher()
    handler = RunRequestHandler(
        settings=ExecutorSettings(env="development", executor_log_batch_seconds=0.01),
        service=attempts,
        runner=runner,
        pool=pool,
        publisher=publisher,
        retry_routes={s: f"delay-{s}" for s in LADDER_SECONDS},
        sandbox=sandbox,
    )
    return handler, pool, publisher


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_run_over_its_jobs_concurrency_goes_back_through_the_shortest_delay_queue() -> None:
    attempts, runner = Attempts(action="throttled"), Runner()
    handler, _, publisher = _handler(attempts, runner)
    before = _sample("automation_executor_throttled_total")
    event = _event()
    await handler.handle(event, _delivery())
    assert runner.runs == 0
    [sent] = publisher.sent
    assert (sent.exchange, sent.routing_key, sent.priority) == ("automation.retry", "delay-1", 7)
    assert sent.event.id == event.id, "the same request, not a new attempt"
    assert _sample("automation_executor_throttled_total") == before + 1


async def test_a_cancelled_execution_is_dropped_when_it_arrives() -> None:
    attempts, runner = Attempts(action="cancelled"), Runner()
    handler, _, _ = _handler(attempts, runner)
    before = _sample("automation_executor_cancellations_total", stage="before_start")
    await handler.handle(_event(), _delivery())
    assert runner.runs == 0
    assert _sample("automation_executor_cancellations_total", stage="before_start") == before + 1


async def test_a_cancellation_stops_the_run_and_records_it_cancelled() -> None:
    attempts, runner = Attempts(), Runner()
    handler, pool, _ = _handler(attempts, runner)
    event = _event()
    task = asyncio.create_task(handler.handle(event, _delivery()))
    await runner.started.wait()
    assert runner.saw_handle, "the runner can publish its child's pid for the cancellation"
    [slot] = pool.of_execution(_execution_id(event))
    assert slot.request_stop("cancel", "no longer needed", grace=1.0)
    assert not slot.request_stop("cancel", "again", grace=1.0), "a second cancellation changes nothing"
    await asyncio.wait_for(task, 5)
    assert attempts.cancelled == ["no longer needed"]
    assert attempts.finished == []
    assert attempts.released == []


async def test_a_cancellation_arriving_before_the_run_starts_keeps_it_from_starting() -> None:
    pool_ref: list[WorkerPool] = []

    def cancel_now(request: RunRequested) -> None:
        for slot in pool_ref[0].of_execution(request.execution_id):
            slot.request_stop("cancel", "too late to run", 1.0)

    attempts, runner = Attempts(on_begin=cancel_now), Runner()
    handler, pool, _ = _handler(attempts, runner)
    pool_ref.append(pool)
    await handler.handle(_event(), _delivery())
    assert runner.runs == 0
    assert attempts.cancelled == ["too late to run"]


async def test_a_run_whose_lease_was_lost_records_nothing() -> None:
    attempts, runner = Attempts(), Runner()
    handler, pool, _ = _handler(attempts, runner)
    event = _event()
    task = asyncio.create_task(handler.handle(event, _delivery()))
    await runner.started.wait()
    [slot] = pool.of_execution(_execution_id(event))
    await slot.stop("lease_lost", "taken over", 0)
    assert await asyncio.wait_for(task, 5) is None, "acknowledged: the attempt is someone else's now"
    assert attempts.finished == []
    assert attempts.cancelled == []


async def test_a_step_asking_for_a_missing_sandbox_fails_without_running() -> None:
    attempts, runner = Attempts(), Runner()
    handler, _, _ = _handler(attempts, runner, sandbox=SandboxStatus("bubblewrap is not installed"))
    await handler.handle(_event({"command": ["true"], "sandbox": "bubblewrap"}), _delivery())
    assert runner.runs == 0
    [outcome] = attempts.finished
    assert outcome.status == "failed"
    assert outcome.permanent
    assert outcome.error is not None
    assert "cannot give (bubblewrap is not installed)" in outcome.error


async def test_shutdown_hands_the_attempt_back_and_requeues() -> None:
    attempts, runner = Attempts(), Runner()
    handler, pool, _ = _handler(attempts, runner)
    task = asyncio.create_task(handler.handle(_event(), _delivery()))
    await runner.started.wait()
    assert pool.abort_all() == 1
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(attempts.released) == 1
    assert attempts.finished == []
    assert attempts.cancelled == []
