"""Leases, lost and poison attempts, hand-backs, cancellations and per-job concurrency against the real database."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest
import pytest_asyncio
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation_contracts import CancelExecution, RunRequested
from automation_db import create_engine, migrate, session_factory
from automation_executor import service as service_module
from automation_executor.db import MIGRATIONS_DIR
from automation_executor.db.hot import HotPath
from automation_executor.db.tables import Attempt, outbox
from automation_executor.domain.backoff import LADDER_SECONDS
from automation_executor.domain.outcome import RunOutcome
from automation_executor.leases import LeaseService
from automation_executor.service import FINISH_TRIES, REAPED_LOG_SEQ, AttemptService
from automation_executor.testing import free_port, run_request_data
from automation_messaging import REASON_HEADER
from automation_messaging.outbox import PRIORITY_KEY
from automation_testing import wait_until

pytestmark = pytest.mark.integration
ROUTES = {s: f"route-{s}" for s in LADDER_SECONDS}
Sessions = async_sessionmaker[AsyncSession]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    await migrate(database_url, MIGRATIONS_DIR)
    engine = create_engine(database_url, pool_size=8)
    yield session_factory(engine)
    await engine.dispose()


class Make(Protocol):
    def __call__(self, worker: str, *, max_lost: int = 3) -> AttemptService: ...


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hot_path(sessions: Sessions, database_url: str) -> AsyncIterator[HotPath]:
    hot = await HotPath.open(database_url, size=4)
    yield hot
    await hot.close()


@pytest.fixture(params=["sessions", "hot"])
def make(request: pytest.FixtureRequest, sessions: Sessions, hot_path: HotPath) -> Make:
    """Services on ORM sessions alone, or with the one-statement claim and record (the app's way)."""
    hot = hot_path if request.param == "hot" else None

    def service(worker: str, *, max_lost: int = 3) -> AttemptService:
        return AttemptService(
            sessions, worker_id=worker, retry_routes=ROUTES, max_lost=max_lost, rand=lambda lo, hi: hi, hot=hot
        )

    return service


def _leases(sessions: Sessions, *, max_lost: int = 3) -> LeaseService:
    return LeaseService(sessions, retry_routes=ROUTES, max_lost=max_lost, rand=lambda lo, hi: hi)


def _request(**kwargs: Any) -> RunRequested:
    max_concurrency = kwargs.pop("max_concurrency", None)
    data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}], **kwargs)
    data["job"]["priority"] = 6
    data["job"]["max_concurrency"] = max_concurrency
    return RunRequested.model_validate(json.loads(json.dumps(data)))


async def _expire(sessions: Sessions, execution_id: uuid.UUID) -> None:
    async with sessions.begin() as session:
        await session.execute(
            text(
                "UPDATE executor.attempts SET lease_expires_at = now() - interval '1 second'"
                " WHERE execution_id = :id AND status = 'running'"
            ),
            {"id": execution_id},
        )


async def _rows(sessions: Sessions, execution_id: uuid.UUID) -> list[Attempt]:
    async with sessions() as session:
        stmt = select(Attempt).where(Attempt.execution_id == execution_id).order_by(Attempt.attempt)
        return list((await session.execute(stmt)).scalars())


async def _outbox(sessions: Sessions, execution_id: uuid.UUID) -> list[dict[str, Any]]:
    async with sessions() as session:
        rows = (await session.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    found = []
    for row in rows:
        body = json.loads(row["body"])
        if body["data"].get("execution_id") == str(execution_id):
            found.append({"exchange": row["exchange"], "key": row["routing_key"], "headers": row["headers"], **body})
    return found


async def test_a_running_attempt_holds_a_lease_its_heartbeat_renews(sessions: Sessions, make: Make) -> None:
    request = _request()
    begun = await make("w-a").begin(request)
    assert begun.run_id is not None
    [row] = await _rows(sessions, request.execution_id)
    assert row.lease_expires_at is not None
    assert timedelta(seconds=25) < row.lease_expires_at - datetime.now(UTC) <= timedelta(seconds=31)
    assert row.request is not None
    leases = _leases(sessions)
    assert await leases.renew([begun.run_id, uuid.uuid4()]) == {begun.run_id: None}
    cancel = CancelExecution(execution_id=request.execution_id, reason="stop", requested_at=datetime.now(UTC))
    assert await leases.remember_cancellation(cancel)
    assert not await leases.remember_cancellation(cancel), "remembered once, whoever receives it"
    assert await leases.renew([begun.run_id]) == {begun.run_id: "stop"}
    finished = await make("w-a").finish_cancelled(request, begun, "stop")
    assert finished.recorded
    assert await leases.renew([begun.run_id]) == {}, "a finished attempt holds no lease"
    [row] = await _rows(sessions, request.execution_id)
    assert (row.status, row.error, row.lease_expires_at, row.request) == ("cancelled", "stop", None, None)
    late = await make("w-a").finish(request, begun, RunOutcome(status="succeeded"))
    assert not late.recorded
    types = [m["type"] for m in await _outbox(sessions, request.execution_id)]
    assert types == ["execution.started", "execution.cancelled"]


async def test_an_expired_attempt_is_recorded_lost_once_whoever_reaps(sessions: Sessions, make: Make) -> None:
    request = _request(retries=2, base_seconds=5, max_seconds=5)
    await make("w-gone").begin(request)
    await _expire(sessions, request.execution_id)
    reaped = await asyncio.gather(*(_leases(sessions).reap_expired() for _ in range(4)))
    mine = [r for batch in reaped for r in batch if r.execution_id == request.execution_id]
    assert len(mine) == 1
    assert mine[0].worker_id == "w-gone"
    assert mine[0].ending.status == "lost"
    redelivered = await make("w-b").begin(request)
    assert redelivered.action == "duplicate", "the redelivery of a lost attempt records nothing"
    messages = await _outbox(sessions, request.execution_id)
    assert [(m["exchange"], m["type"]) for m in messages] == [
        ("automation.events", "execution.started"),
        ("automation.events", "execution.log"),
        ("automation.events", "execution.failed"),
        ("automation.retry", "run.requested"),
    ]
    said, failed, retry = messages[1], messages[2], messages[3]
    assert (said["data"]["attempt"], said["data"]["seq"]) == (1, REAPED_LOG_SEQ)
    [line] = said["data"]["entries"]
    assert line["stream"] == "system"
    lost = "attempt 1 lost: its executor w-gone stopped renewing its lease (its lease ran out at "
    assert line["text"].startswith(lost)
    assert line["text"].endswith(f"; attempt 2 at {failed['data']['next_attempt_at'][11:19]}Z"), line["text"]
    assert failed["data"]["error"] == "executor lost"
    assert failed["data"]["will_retry"] is True
    assert retry["key"] == "route-5"
    assert retry["headers"][PRIORITY_KEY] == 6
    assert retry["data"]["attempt"] == 2
    nxt = RunRequested.model_validate(retry["data"])
    assert (await make("w-b").begin(nxt)).action == "run"
    rows = await _rows(sessions, request.execution_id)
    assert [(r.attempt, r.status, r.worker_id, r.lost_count) for r in rows] == [
        (1, "lost", "w-gone", 1),
        (2, "running", "w-b", 0),
    ]


async def test_a_run_that_keeps_killing_its_executor_becomes_poison(sessions: Sessions, make: Make) -> None:
    request = _request(retries=10)
    for attempt in (1, 2, 3):
        current = request.model_copy(update={"attempt": attempt})
        assert (await make(f"w-{attempt}").begin(current)).action == "run"
        await _expire(sessions, request.execution_id)
        seen = await make("w-next").begin(current)  # its redelivery finds the lease expired
        assert seen.action == "reaped"
        assert seen.ending is not None
        assert seen.ending.will_retry is (attempt < 3)
    assert seen.ending is not None
    assert seen.ending.dead_letter == "poison"
    rows = await _rows(sessions, request.execution_id)
    assert [(r.status, r.lost_count, r.will_retry) for r in rows] == [
        ("lost", 1, True),
        ("lost", 2, True),
        ("lost", 3, False),
    ]
    messages = await _outbox(sessions, request.execution_id)
    said, final, letter = messages[-3], messages[-2], messages[-1]
    assert said["data"]["entries"][0]["text"].endswith("; poison: killed its executor 3 times")
    assert final["type"] == "execution.failed"
    assert final["data"]["error"] == "poison: killed its executor 3 times"
    assert final["data"]["will_retry"] is False
    assert (letter["exchange"], letter["key"]) == ("automation.dlx", "run.requested")
    assert letter["headers"][REASON_HEADER] == "poison: killed its executor 3 times"
    assert letter["headers"]["x-original-queue"] == "executor.runs"
    assert letter["data"]["attempt"] == 4


async def test_a_handed_back_attempt_runs_again_as_itself(sessions: Sessions, make: Make) -> None:
    request = _request()
    first = await make("w-stopping").begin(request)
    assert await make("w-stopping").release(request, first)
    await _leases(sessions).reap_expired()
    [row] = await _rows(sessions, request.execution_id)
    assert (row.status, row.lease_expires_at) == ("released", None), "handed back: no lease, never reaped"
    again = await make("w-new").begin(request)
    assert again.action == "run"
    assert again.run_number == 1
    assert again.previous_worker == "w-stopping"
    late = await make("w-stopping").finish(request, first, RunOutcome(status="succeeded"))
    assert not late.recorded
    assert (await make("w-new").finish(request, again, RunOutcome(status="succeeded"))).recorded
    [row] = await _rows(sessions, request.execution_id)
    assert (row.status, row.worker_id, row.run_count, row.lost_count) == ("succeeded", "w-new", 2, 0)
    started = [m for m in await _outbox(sessions, request.execution_id) if m["type"] == "execution.started"]
    assert len({m["id"] for m in started}) == 2


async def test_cancellations_drop_queued_retrying_orphaned_and_handed_back_runs(sessions: Sessions, make: Make) -> None:
    leases = _leases(sessions)

    async def cancel(request: RunRequested) -> None:
        reason = f"cancel {request.execution_id}"
        await leases.remember_cancellation(
            CancelExecution(execution_id=request.execution_id, reason=reason, requested_at=datetime.now(UTC))
        )

    queued = _request()
    await cancel(queued)
    dropped = await make("w").begin(queued)
    assert (dropped.action, dropped.reason) == ("cancelled", f"cancel {queued.execution_id}")
    assert (await make("w").begin(queued)).action == "duplicate"
    line, event = await _outbox(sessions, queued.execution_id)
    assert event["type"] == "execution.cancelled"
    assert event["data"]["reason"] == f"cancel {queued.execution_id}"
    assert (line["type"], line["data"]["seq"]) == ("execution.log", REAPED_LOG_SEQ), "the log says why it never ran"
    assert [e["text"] for e in line["data"]["entries"]] == [
        f"attempt 1 cancelled before it started: cancel {queued.execution_id}"
    ]

    orphan = _request(retries=3)
    await make("w-gone").begin(orphan)
    await cancel(orphan)
    await _expire(sessions, orphan.execution_id)
    await leases.reap_expired()
    [row] = await _rows(sessions, orphan.execution_id)
    assert row.status == "cancelled", "a cancelled run whose executor vanished is not retried"
    assert [m["type"] for m in await _outbox(sessions, orphan.execution_id)][-1] == "execution.cancelled"

    handed_back = _request()
    begun = await make("w-stopping").begin(handed_back)
    await make("w-stopping").release(handed_back, begun)
    await cancel(handed_back)
    assert (await make("w").begin(handed_back)).action == "cancelled"
    [row] = await _rows(sessions, handed_back.execution_id)
    assert row.status == "cancelled"
    *_, line, event = await _outbox(sessions, handed_back.execution_id)
    assert (line["type"], event["type"]) == ("execution.log", "execution.cancelled")
    assert [e["text"] for e in line["data"]["entries"]] == [
        f"attempt 1 cancelled before it ran again (it was handed back): cancel {handed_back.execution_id}"
    ]

    retried = _request(attempt=2, retries=3)
    await cancel(retried)
    assert (await make("w").begin(retried)).action == "cancelled"

    assert await leases.forget_cancellations(timedelta(days=1)) == 0
    assert await leases.forget_cancellations(timedelta(seconds=-60)) >= 4


async def test_max_concurrency_holds_across_replicas(sessions: Sessions, make: Make) -> None:
    job_id = uuid.uuid4()
    requests = [_request(job_id=job_id, max_concurrency=2) for _ in range(6)]
    begun = await asyncio.gather(*(make(f"w-{i}").begin(r) for i, r in enumerate(requests)))
    actions = sorted(b.action for b in begun)
    assert actions == ["run", "run", "throttled", "throttled", "throttled", "throttled"]
    throttled = [r for r, b in zip(requests, begun, strict=True) if b.action == "throttled"]
    assert await _rows(sessions, throttled[0].execution_id) == [], "a throttled request is not an attempt"
    running = [(r, b) for r, b in zip(requests, begun, strict=True) if b.action == "run"]
    await _expire(sessions, running[0][0].execution_id)
    assert (await make("w-x").begin(throttled[0])).action == "run", "an expired lease frees its slot"
    assert (await make("w-y").begin(throttled[1])).action == "throttled"
    request, first = running[1]
    await make("w-1").finish(request, first, RunOutcome(status="succeeded"))
    assert (await make("w-y").begin(throttled[1])).action == "run"


class Outage:
    """Sessions that cannot reach the database (a closed port: refused, as while PostgreSQL restarts)
    until the test says it is back."""

    def __init__(self, good: Sessions) -> None:
        self.good, self.down = good, True
        self._engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone", pool_size=1)
        self.bad = session_factory(self._engine)
        self.tries = 0

    def _now(self) -> Sessions:
        self.tries += self.down
        return self.bad if self.down else self.good

    def __call__(self) -> AsyncSession:
        return self._now()()

    def begin(self) -> Any:
        return self._now().begin()

    async def close(self) -> None:
        await self._engine.dispose()


async def test_an_ending_waits_for_the_database_and_is_recorded_when_it_is_back(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is over when the database goes away: its outcome is recorded when the database is back,
    however long it took and though its lease ran out meanwhile, not left for the reaper to call lost
    and run again."""
    monkeypatch.setattr(service_module, "FINISH_BACKOFF_SECONDS", 0.05)
    monkeypatch.setattr(service_module, "FINISH_OUTAGE_PAUSE_CAP_SECONDS", 0.2)
    request = _request(retries=3)
    begun = await AttemptService(sessions, worker_id="w", retry_routes=ROUTES).begin(request)
    outage = Outage(sessions)
    service = AttemptService(outage, worker_id="w", retry_routes=ROUTES)  # type: ignore[arg-type]
    try:
        finishing = asyncio.create_task(service.finish(request, begun, RunOutcome(status="succeeded")))
        await wait_until(lambda: asyncio.sleep(0, outage.tries > FINISH_TRIES + 1), what="more tries than a blip gets")
        assert not finishing.done(), "still trying"
        await _expire(sessions, request.execution_id)
        outage.down = False
        finished = await asyncio.wait_for(finishing, 10)
    finally:
        await outage.close()
    assert finished.recorded
    [row] = await _rows(sessions, request.execution_id)
    assert row.status == "succeeded"
    assert [m["type"] for m in await _outbox(sessions, request.execution_id)][-1] == "execution.succeeded"


async def test_a_redelivery_leaves_an_expired_lease_to_the_reaper_until_it_may_reap(sessions: Sessions) -> None:
    """Right after an outage (or a start) the reaper waits a lease period; so does a redelivered request:
    it is acked as in progress, and the attempt stays with its holder, which may yet renew or record it."""
    request = _request(retries=3)
    await AttemptService(sessions, worker_id="w-holder", retry_routes=ROUTES).begin(request)
    await _expire(sessions, request.execution_id)
    waiting = AttemptService(sessions, worker_id="w-other", retry_routes=ROUTES, may_reap=lambda: False)
    seen = await waiting.begin(request)
    assert (seen.action, seen.previous_worker) == ("in_progress", "w-holder")
    [row] = await _rows(sessions, request.execution_id)
    assert (row.status, row.worker_id) == ("running", "w-holder")
    settled = AttemptService(sessions, worker_id="w-other", retry_routes=ROUTES, may_reap=lambda: True)
    assert (await settled.begin(request)).action == "reaped"


async def test_a_renewal_the_database_does_not_answer_is_given_up_and_its_run_fenced_by_the_deadline(
    sessions: Sessions,
) -> None:
    """The attempt's row is locked by another transaction, so the renewal waits without an error, as it
    would on a frozen database or a network that drops packets: the heartbeat gives it up after a third
    of the lease, and the fence stops the run before its lease runs out in the database."""
    import time

    from automation_executor.leases import LeaseKeeper, Periodic
    from automation_executor.pool import WorkerPool

    request = _request()
    begun = await AttemptService(sessions, worker_id="w-cut-off", retry_routes=ROUTES, lease_seconds=1.5).begin(request)
    assert begun.run_id is not None
    leases = LeaseService(sessions, retry_routes=ROUTES, lease_seconds=1.5)
    pool = WorkerPool("w-cut-off", 2)
    keeper = LeaseKeeper(leases, pool, kill_grace=0.0)
    with pool.slot(request.execution_id, request.attempt, request.job_id) as slot:
        slot.run_id = begun.run_id
        slot.run_task = asyncio.create_task(asyncio.Event().wait())
        slot.lease_deadline = time.monotonic() + 1.5
        async with sessions.begin() as blocker:
            await blocker.execute(
                text("SELECT 1 FROM executor.attempts WHERE run_id = :id FOR UPDATE"), {"id": begun.run_id}
            )
            asked = time.monotonic()
            await keeper.renew_once()
            assert 0.45 < time.monotonic() - asked < 1.0, "given up after a third of the lease"
            assert slot.stop_kind is None
            fence = Periodic("lease_fence", keeper.fence_overdue, keeper.fence_every)  # as the app runs it
            fence.start()
            try:
                await asyncio.wait({slot.run_task}, timeout=5)
            finally:
                await fence.stop()
            fenced = time.monotonic()
            assert slot.run_task.cancelled(), "the run was stopped"
            assert fenced <= slot.lease_deadline + 0.05, "stopped by the deadline"
            assert fenced >= slot.lease_deadline - 3 * keeper.fence_every
        assert slot.stop_kind == "lease_lost"
    assert await leases.renew([begun.run_id]) == {begun.run_id: None}, "the sessions work again once it answers"


async def test_expired_leases_found_late_are_left_to_their_holders(sessions: Sessions) -> None:
    """The reaper's look waits behind a lock for longer than a sixth of the lease, as it would through a
    frozen database: what it finds then ran out because nobody could renew, so it records nothing."""
    from automation_executor.leases import DatabaseStalled

    request = _request(retries=2)
    await AttemptService(sessions, worker_id="w-holder", retry_routes=ROUTES).begin(request)
    await _expire(sessions, request.execution_id)
    leases = LeaseService(sessions, retry_routes=ROUTES, lease_seconds=3.0)

    async def frozen_for(seconds: float) -> None:
        async with sessions.begin() as blocker:
            await blocker.execute(text("LOCK TABLE executor.attempts IN ACCESS EXCLUSIVE MODE"))
            await asyncio.sleep(seconds)

    freeze = asyncio.create_task(frozen_for(1.0))
    await asyncio.sleep(0.1)
    with pytest.raises(DatabaseStalled) as stalled:
        await leases.reap_expired(stall_seconds=0.5)
    await freeze
    assert 0.8 < stalled.value.seconds < 3
    [row] = await _rows(sessions, request.execution_id)
    assert (row.status, row.worker_id) == ("running", "w-holder"), "left as it was"
    reaped = await leases.reap_expired(stall_seconds=0.5)
    assert request.execution_id in {r.execution_id for r in reaped}, "found at once: recorded"
