"""The run.requested handler with hand-written fakes: what runs, what is recorded, what is acked."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from automation_contracts import CloudEvent, RunRequested, build_event
from automation_executor.consumers import RunRequestHandler
from automation_executor.domain.backoff import LADDER_SECONDS
from automation_executor.domain.outcome import RunOutcome
from automation_executor.logstream import LogSink
from automation_executor.pool import WorkerPool
from automation_executor.service import Begin, Finished
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import run_request_data
from automation_messaging import DeadLetter, Delivery


@dataclass
class FakeAttempts:
    """Attempt use cases in memory: decides by a scripted action."""

    action: str = "run"
    lease_seconds: float = 30.0
    recorded: bool = True
    """What ``finish`` answers (False: another replica took the attempt over)."""
    fails: BaseException | None = None
    """What ``finish`` raises instead (the database still down after its retries)."""
    begun: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    finished: list[tuple[RunRequested, RunOutcome]] = field(default_factory=list)
    cancelled: list[tuple[RunRequested, str]] = field(default_factory=list)
    released: list[RunRequested] = field(default_factory=list)
    logs: list[CloudEvent] = field(default_factory=list)
    """The ``execution.log`` batches recorded with the outcomes."""

    async def begin(self, request: RunRequested) -> Begin:
        self.begun.append((request.execution_id, request.attempt))
        if self.action != "run":
            return Begin(self.action, status="succeeded")  # type: ignore[arg-type]
        return Begin("run", run_id=uuid.uuid4(), started_at=datetime.now(UTC))

    async def finish(
        self, request: RunRequested, begun: Begin, outcome: RunOutcome, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished:
        self.finished.append((request, outcome))
        if self.fails is not None:
            raise self.fails
        if not self.recorded:
            return Finished(recorded=False)
        self.logs.extend(logs)
        return Finished(recorded=True)

    async def finish_cancelled(
        self, request: RunRequested, begun: Begin, reason: str, *, logs: Sequence[CloudEvent] = ()
    ) -> Finished:
        self.logs.extend(logs)
        self.cancelled.append((request, reason))
        return Finished(recorded=True)

    async def release(self, request: RunRequested, begun: Begin) -> bool:
        self.released.append(request)
        return True


@dataclass
class FakeRunner:
    """Runs nothing; logs a line and returns a scripted outcome (optionally after a gate opens)."""

    outcome: RunOutcome = field(default_factory=lambda: RunOutcome(status="succeeded", exit_code=0))
    gate: asyncio.Event | None = None
    runs: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, request: RunRequested, logs: LogSink) -> RunOutcome:
        self.runs += 1
        self.started.set()
        logs.add("stdout", "s", "hello")
        if self.gate is not None:
            await self.gate.wait()
        return self.outcome


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[CloudEvent] = []

    async def publish(
        self, event: CloudEvent, *, exchange: str, routing_key: str | None = None, priority: int | None = None
    ) -> None:
        self.events.append(event)


@dataclass
class FakeMessage:
    redelivered: bool = False
    headers: dict[str, Any] = field(default_factory=dict)


def _delivery(redelivered: bool = False) -> Delivery:
    return Delivery(FakeMessage(redelivered), "executor.runs", "run.requested", 0)  # type: ignore[arg-type]


def _event(**kwargs: Any) -> CloudEvent:
    data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}], **kwargs)
    return build_event("run.requested", source="/tests", data=json.loads(json.dumps(data)))


def _handler(
    attempts: FakeAttempts, runner: FakeRunner, pool: WorkerPool | None = None
) -> tuple[RunRequestHandler, FakePublisher]:
    publisher = FakePublisher()
    settings = ExecutorSettings(env="development", executor_log_batch_seconds=0.01)
    handler = RunRequestHandler(
        settings=settings,
        service=attempts,
        runner=runner,
        pool=pool or WorkerPool("w", 4),
        publisher=publisher,
        retry_routes={seconds: f"delay-{seconds}" for seconds in LADDER_SECONDS},
    )
    return handler, publisher


async def test_a_new_attempt_runs_and_is_recorded_before_the_handler_returns() -> None:
    attempts, runner = FakeAttempts(), FakeRunner()
    handler, publisher = _handler(attempts, runner)
    assert await handler.handle(_event(), _delivery(redelivered=True)) is None
    assert runner.runs == 1
    assert attempts.begun == [(attempts.begun[0][0], 1)]
    [(_, outcome)] = attempts.finished
    assert outcome.status == "succeeded"
    published = [entry["text"] for e in publisher.events for entry in e.data["entries"]]
    recorded = [entry["text"] for e in attempts.logs for entry in e.data["entries"]]
    assert [e.type for e in attempts.logs] == ["execution.log"]
    assert recorded[-1].startswith("attempt 1 succeeded"), "the end of the log is recorded with the outcome"
    assert "hello" in published + recorded
    assert not any(t.startswith("attempt 1 succeeded") for t in published), "and not published on its own"


@pytest.mark.parametrize("why", ["superseded", "database down"])
async def test_the_end_of_the_log_is_published_when_the_outcome_cannot_be_recorded(why: str) -> None:
    attempts, runner = FakeAttempts(recorded=False), FakeRunner()
    if why == "database down":
        attempts.fails = ConnectionError("database down")
    handler, publisher = _handler(attempts, runner)
    if why == "database down":
        with pytest.raises(ConnectionError):  # the consumer then hands the message back
            await handler.handle(_event(), _delivery())
    else:
        assert await handler.handle(_event(), _delivery()) is None
    assert attempts.logs == []
    published = [entry["text"] for e in publisher.events for entry in e.data["entries"]]
    assert "hello" in published
    assert any(t.startswith("attempt 1 succeeded") for t in published)


@pytest.mark.parametrize("action", ["duplicate", "in_progress"])
async def test_duplicates_run_nothing_and_record_nothing(action: str) -> None:
    attempts, runner = FakeAttempts(action=action), FakeRunner()
    handler, publisher = _handler(attempts, runner)
    assert await handler.handle(_event(), _delivery()) is None
    assert runner.runs == 0
    assert attempts.finished == []
    assert publisher.events == []


async def test_a_second_delivery_to_the_same_replica_waits_for_the_first() -> None:
    gate = asyncio.Event()
    attempts, runner = FakeAttempts(), FakeRunner(gate=gate)
    handler, _ = _handler(attempts, runner)
    event = _event()
    first = asyncio.create_task(handler.handle(event, _delivery()))
    await runner.started.wait()
    second = asyncio.create_task(handler.handle(event, _delivery(redelivered=True)))
    for _ in range(5):
        await asyncio.sleep(0)  # let the second delivery reach the pool
    assert not second.done()
    assert len(attempts.begun) == 1
    gate.set()
    await asyncio.gather(first, second)
    assert runner.runs == 1
    assert len(attempts.begun) == 1
    assert len(attempts.finished) == 1


async def test_invalid_data_is_dead_lettered() -> None:
    handler, _ = _handler(FakeAttempts(), FakeRunner())
    event = build_event("run.requested", source="/tests", data={"execution_id": "not-a-uuid"})
    with pytest.raises(DeadLetter, match=r"invalid run\.requested"):
        await handler.handle(event, _delivery())


async def test_deliveries_during_shutdown_are_handed_back() -> None:
    pool = WorkerPool("w", 4)
    pool.draining = True
    attempts, runner = FakeAttempts(), FakeRunner()
    handler, _ = _handler(attempts, runner, pool)
    with pytest.raises(asyncio.CancelledError):
        await handler.handle(_event(), _delivery())
    assert attempts.begun == []
    assert runner.runs == 0
