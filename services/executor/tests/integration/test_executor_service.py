"""Attempt use cases against the real database: claiming, lost attempts, recording outcomes exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Protocol

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import CloudEvent, LogEntry, RunRequested
from automation_db import create_engine, migrate, session_factory, utcnow
from automation_executor.db import MIGRATIONS_DIR
from automation_executor.db.hot import SCHEMA, HotPath
from automation_executor.db.tables import outbox
from automation_executor.domain.backoff import LADDER_SECONDS
from automation_executor.domain.outcome import RunOutcome
from automation_executor.events import log_event
from automation_executor.service import AttemptService
from automation_executor.testing import run_request_data
from automation_messaging.outbox import notify_channel

pytestmark = pytest.mark.integration
ROUTES = {s: f"route-{s}" for s in LADDER_SECONDS}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await migrate(database_url, MIGRATIONS_DIR)
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


class Make(Protocol):
    def __call__(self, worker: str, *, jitter: float = 1.0) -> AttemptService: ...


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hot_path(sessions: async_sessionmaker[AsyncSession], database_url: str) -> AsyncIterator[HotPath]:
    hot = await HotPath.open(database_url, size=2)
    yield hot
    await hot.close()


@pytest.fixture(params=["sessions", "hot"])
def make(request: pytest.FixtureRequest, sessions: async_sessionmaker[AsyncSession], hot_path: HotPath) -> Make:
    """Services on ORM sessions alone, or with the one-statement claim and record (the app's way)."""
    hot = hot_path if request.param == "hot" else None

    def service(worker: str, *, jitter: float = 1.0) -> AttemptService:
        return AttemptService(
            sessions,
            worker_id=worker,
            retry_routes=ROUTES,
            rand=lambda low, high: low + (high - low) * jitter,
            hot=hot,
        )

    return service


def _request(**kwargs: Any) -> RunRequested:
    data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}], **kwargs)
    return RunRequested.model_validate(json.loads(json.dumps(data)))


async def _outbox_for(sessions: async_sessionmaker[AsyncSession], execution_id: uuid.UUID) -> list[dict[str, Any]]:
    async with sessions() as session:
        rows = (await session.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    found = []
    for row in rows:
        body = json.loads(row["body"])
        if body["data"].get("execution_id") == str(execution_id):
            found.append({"exchange": row["exchange"], "routing_key": row["routing_key"], "event": body})
    return found


async def test_begin_then_duplicates_are_recognised(sessions: async_sessionmaker[AsyncSession], make: Make) -> None:
    service = make("worker-a")
    request = _request()
    begun = await service.begin(request)
    assert begun.action == "run"
    assert begun.run_number == 0
    again = await make("worker-b").begin(request)
    assert again.action == "in_progress"
    assert again.previous_worker == "worker-a"
    finished = await service.finish(request, begun, RunOutcome(status="succeeded", exit_code=0, outputs={"s": 1}))
    assert finished.recorded
    assert not finished.will_retry
    for _ in range(2):
        late = await make("worker-b").begin(request)
        assert late.action == "duplicate"
        assert late.status == "succeeded"
    messages = await _outbox_for(sessions, request.execution_id)
    assert [(m["exchange"], m["event"]["type"]) for m in messages] == [
        ("automation.events", "execution.started"),
        ("automation.events", "execution.succeeded"),
    ]
    assert messages[1]["event"]["data"]["result"] == {"s": 1}


async def _expire_lease(sessions: async_sessionmaker[AsyncSession], execution_id: uuid.UUID) -> None:
    async with sessions.begin() as session:
        await session.execute(
            text(
                "UPDATE executor.attempts SET lease_expires_at = now() - interval '1 second' WHERE execution_id = :id"
            ),
            {"id": execution_id},
        )


async def test_a_redelivered_attempt_whose_lease_expired_is_lost_and_retried(
    sessions: async_sessionmaker[AsyncSession], make: Make
) -> None:
    request = _request(retries=1, base_seconds=10, max_seconds=60)
    crashed = await make("worker-crashed").begin(request)
    survivor = make("worker-b")
    assert (await survivor.begin(request)).action == "in_progress", "a live lease belongs to its holder"
    await _expire_lease(sessions, request.execution_id)
    seen = await survivor.begin(request)
    assert seen.action == "reaped"
    assert seen.status == "lost"
    assert seen.previous_worker == "worker-crashed"
    assert seen.ending is not None
    assert seen.ending.will_retry
    assert seen.ending.delay_seconds == 10  # uniform(0, 10) at its top, on the ladder
    late = await make("worker-crashed").finish(request, crashed, RunOutcome(status="succeeded"))
    assert not late.recorded, "the lost run must not record an outcome"
    assert (await survivor.begin(request)).action == "duplicate"
    messages = await _outbox_for(sessions, request.execution_id)
    kinds = [(m["exchange"], m["routing_key"], m["event"]["type"]) for m in messages]
    assert kinds == [
        ("automation.events", "execution.started", "execution.started"),
        ("automation.events", "execution.log", "execution.log"),
        ("automation.events", "execution.failed", "execution.failed"),
        ("automation.retry", "route-10", "run.requested"),
    ]
    said = messages[1]["event"]["data"]["entries"][0]["text"]
    assert said.startswith("attempt 1 lost: its executor worker-crashed stopped renewing its lease"), said
    failure = messages[2]["event"]["data"]
    assert failure["will_retry"] is True
    assert failure["error"] == "executor lost"
    retry = messages[3]["event"]["data"]
    assert retry["attempt"] == 2
    assert retry["execution_id"] == str(request.execution_id)
    assert retry["requested_at"] == failure["next_attempt_at"]
    [lost] = await survivor.attempts_of(request.execution_id, account_id=None, after_attempt=0, limit=10)
    assert (lost.status, lost.worker_id, lost.lost_count, lost.will_retry) == ("lost", "worker-crashed", 1, True)
    assert lost.lost_at is not None
    assert lost.request is None


async def test_last_and_permanent_failures_do_not_retry(sessions: async_sessionmaker[AsyncSession], make: Make) -> None:
    service = make("worker-a", jitter=0.0)
    last = _request(attempt=3, retries=2)
    begun = await service.begin(last)
    finished = await service.finish(last, begun, RunOutcome(status="timed_out", error="timed out after 1s"))
    assert finished.recorded
    assert not finished.will_retry
    permanent = _request(retries=5)
    begun = await service.begin(permanent)
    finished = await service.finish(permanent, begun, RunOutcome(status="failed", error="bad", permanent=True))
    assert not finished.will_retry
    retried = _request(retries=5, base_seconds=0.01, max_seconds=0.01)
    begun = await service.begin(retried)
    finished = await service.finish(retried, begun, RunOutcome(status="failed", error="bad"))
    assert finished.delay_seconds == 1  # below the ladder's first step: one second
    assert finished.next_attempt_at is not None
    assert begun.started_at is not None
    assert finished.next_attempt_at - begun.started_at >= timedelta(seconds=1)
    rows = await _outbox_for(sessions, last.execution_id)
    assert [(m["exchange"], m["event"]["type"]) for m in rows] == [
        ("automation.events", "execution.started"),
        ("automation.events", "execution.timed_out"),
        ("automation.dlx", "run.requested"),  # the final failure goes to automation.dead too
    ]
    history = await service.attempts_of(last.execution_id, account_id=None, after_attempt=0, limit=10)
    assert [(a.attempt, a.status, a.will_retry) for a in history] == [(3, "timed_out", False)]
    assert await service.attempts_of(last.execution_id, account_id=uuid.uuid4(), after_attempt=0, limit=10) == []


async def test_the_hot_statements_wake_the_relay_in_process_and_notify_nobody(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    listener = await asyncpg.connect(database_url)
    notified: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(notify_channel(SCHEMA), lambda _c, _p, channel, _payload: notified.put_nowait(channel))
    wakes: list[str] = []
    hot = await HotPath.open(database_url, size=2, wake=lambda: wakes.append("woken"))
    try:
        service = AttemptService(sessions, worker_id="worker-hot", retry_routes=ROUTES, hot=hot)
        request = _request()
        begun = await service.begin(request)
        assert begun.action == "run"
        assert wakes == ["woken"], "the claim committed execution.started"
        assert (await service.finish(request, begun, RunOutcome(status="succeeded", exit_code=0))).recorded
        assert wakes == ["woken", "woken"], "the record committed the outcome"
        assert not (await service.finish(request, begun, RunOutcome(status="failed"))).recorded
        assert len(wakes) == 2, "a compare-and-set that changed nothing enqueues nothing, so wakes nobody"
        await asyncio.sleep(0.2)
        await listener.execute("SELECT 1")  # whatever was sent to it has arrived by the end of a round trip
        assert notified.empty(), "no pg_notify: each one costs every listening backend a transaction"
    finally:
        await hot.close()
        await listener.close()
    [row] = await service.attempts_of(request.execution_id, account_id=None, after_attempt=0, limit=5)
    assert (row.status, row.request, row.lease_expires_at) == ("succeeded", None, None)
    assert row.updated_at > row.created_at
    assert len(await _outbox_for(sessions, request.execution_id)) == 2, "started and succeeded, for the relay"


@pytest.mark.parametrize("status", ["succeeded", "cancelled"])
async def test_the_end_of_the_log_is_recorded_with_the_outcome_ahead_of_it(
    sessions: async_sessionmaker[AsyncSession], make: Make, status: str
) -> None:
    service = make("worker-logs")
    request = _request()
    begun = await service.begin(request)

    def batch(seq: int) -> CloudEvent:
        entry = LogEntry(ts=utcnow(), stream="stdout", step="s", text=f"line {seq}")
        return log_event(request, seq=seq, entries=[entry], truncated=False)

    batches = [batch(3), batch(4)]
    if status == "cancelled":
        finished = await service.finish_cancelled(request, begun, "asked", logs=batches)
    else:
        finished = await service.finish(request, begun, RunOutcome(status="succeeded", exit_code=0), logs=batches)
    assert finished.recorded
    messages = await _outbox_for(sessions, request.execution_id)
    assert [(m["exchange"], m["event"]["type"]) for m in messages] == [
        ("automation.events", "execution.started"),
        ("automation.events", "execution.log"),
        ("automation.events", "execution.log"),
        ("automation.events", f"execution.{status}"),
    ], "in the order the relay publishes them: the log's end before the outcome"
    assert [m["event"]["data"]["seq"] for m in messages[1:3]] == [3, 4]
    assert messages[1]["event"]["id"] == batches[0].id
    again = await service.finish(request, begun, RunOutcome(status="failed"), logs=[batch(5)])
    assert not again.recorded
    assert len(await _outbox_for(sessions, request.execution_id)) == 4, "nothing of a run that no longer holds it"
