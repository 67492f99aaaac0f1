"""Crash exactness: two scheduler processes under load, one killed with SIGKILL and restarted, and every
nominal slot the schedules imply still produces exactly one ``run.requested``.

The replicas are real ``python -m automation_scheduler serve`` processes on one database and one vhost.
The test loads 200 schedules (``@every 1s`` with anchors spread over the second, and 6-field cron
``*/2 * * * * *``) through ``job.created`` events, captures every ``run.requested`` on its own queue,
SIGKILLs one replica mid-run, restarts it, lets both run, then deletes the jobs (no new load) and waits
for the outbox to drain.

What is counted, per job, over the window each job fully covers (from its first fired slot to one second
before the load stopped), against slots computed here by plain arithmetic (not by the scheduler's code):

- every implied slot has exactly one distinct execution id, and that id is the deterministic
  ``execution_id_for(job, slot)``; no slot is missing, no slot off the schedule's grid appears;
- ``scheduler.fires`` holds exactly one ``fired`` row per slot and no ``missed`` one.

Raw duplicate *messages* are reported, and allowed only as what the transactional outbox documents:
delivery is at-least-once, so a replica killed after its relay had a batch confirmed by the broker but
before it committed the deletion of those outbox rows leaves them to be published again by the other
relay. Such a duplicate is the same outbox row published twice, hence byte-identical (a second *fire* of
the slot would carry another ``requested_at``), and there are at most one relay batch of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.testing import Bus, Jobs
from automation_suite import ServiceProcess, SuiteConfig
from automation_testing import wait_until

pytestmark = pytest.mark.integration

EVERY_JOBS = 100
CRON_JOBS = 100
EVERY = "@every 1s"
CRON = "*/2 * * * * *"
SECOND = timedelta(seconds=1)
OUTBOX_BATCH_SIZE = 500
"""The relay's batch (``AUTOMATION_OUTBOX_BATCH_SIZE``): the most messages one killed relay can leave
confirmed but not deleted."""
FIRES_METRIC = 'automation_scheduler_fires_total{trigger="schedule"}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Replica:
    """One scheduler process on its own port; restartable after a kill."""

    name: str
    process: ServiceProcess
    url: str

    @classmethod
    def build(cls, name: str, env: dict[str, str], log_dir: Path) -> Replica:
        port = free_port()
        config = SuiteConfig(env=env, ports={"scheduler": port}, log_dir=log_dir / name, echo=False)
        config.stop_grace_seconds = 10.0
        return cls(name, ServiceProcess("scheduler", config), config.url("scheduler"))

    async def start(self, http: httpx.AsyncClient) -> None:
        self.process.start()

        async def ready() -> bool:
            code = self.process.exit_code
            if code is not None:
                raise AssertionError(f"replica {self.name} exited with {code}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get(f"{self.url}/readyz")).status_code == 200
            return False

        await wait_until(ready, timeout=30, interval=0.1, what=f"replica {self.name} ready")

    async def fired(self, http: httpx.AsyncClient) -> float:
        """Runs this process has requested (its fire loop's counter)."""
        text = (await http.get(f"{self.url}/metrics")).text
        for line in text.splitlines():
            if line.startswith(FIRES_METRIC):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def kill(self) -> None:
        self.process.signal(signal.SIGKILL)
        assert await asyncio.to_thread(self.process.wait, 10), f"replica {self.name} survived SIGKILL"
        self.process.close()

    async def stop(self) -> None:
        self.process.signal(signal.SIGTERM)
        if not await asyncio.to_thread(self.process.wait, self.process.config.stop_grace_seconds):
            self.process.signal(signal.SIGKILL)
            await asyncio.to_thread(self.process.wait, 5)
        self.process.close()

    def log_tail(self) -> str:
        log_dir = self.process.config.log_dir
        assert log_dir is not None
        path = log_dir / "scheduler.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


@contextlib.asynccontextmanager
async def two_replicas(database_url: str, amqp_url: str, log_dir: Path) -> AsyncIterator[list[Replica]]:
    env = {
        "AUTOMATION_ENV": "development",
        "AUTOMATION_DATABASE_URL": database_url,
        "AUTOMATION_AMQP_URL": amqp_url,
        "AUTOMATION_JWT_SECRET": "s" * 32,
        "AUTOMATION_LOG_LEVEL": "WARNING",
        "AUTOMATION_LOG_FORMAT": "json",
        "AUTOMATION_SHUTDOWN_GRACE_SECONDS": "5",
        "AUTOMATION_OUTBOX_BATCH_SIZE": str(OUTBOX_BATCH_SIZE),
    }
    replicas = [Replica.build(name, env, log_dir) for name in ("a", "b")]
    # Migrate once up front; both replicas then start on a ready schema.
    await asyncio.to_thread(replicas[0].process.run_once, "migrate")
    try:
        yield replicas
    finally:
        for replica in replicas:
            await replica.stop()


def implied_slots(schedule: str, anchor: datetime, start: datetime, end: datetime) -> list[datetime]:
    """The nominal times of ``schedule`` in ``[start, end]``, by plain arithmetic."""
    step, origin = (SECOND, anchor) if schedule == EVERY else (2 * SECOND, datetime(1970, 1, 1, tzinfo=UTC))
    first = origin + math.ceil((start - origin) / step) * step
    slots: list[datetime] = []
    while first <= end:
        slots.append(first)
        first += step
    return slots


async def test_sigkill_of_a_replica_loses_and_doubles_no_slot(database_url: str, amqp_url: str, tmp_path: Path) -> None:
    jobs = Jobs()
    base = datetime.now(UTC).replace(microsecond=0)
    plan: dict[uuid.UUID, tuple[str, datetime]] = {}
    for i in range(EVERY_JOBS):  # anchors spread over the second: 100 fires/s in 10 ms steps
        plan[uuid.uuid4()] = (EVERY, base + i * timedelta(milliseconds=10))
    for _ in range(CRON_JOBS):  # 100 fires at once every even second
        plan[uuid.uuid4()] = (CRON, base)

    async with (
        httpx.AsyncClient(timeout=5) as http,
        two_replicas(database_url, amqp_url, tmp_path) as replicas,
    ):
        a, b = replicas
        await asyncio.gather(a.start(http), b.start(http))
        bus = Bus(amqp_url)
        await bus.open()
        try:
            for job_id, (schedule, anchor) in plan.items():
                await bus.publish(jobs.changed(job_id, schedule=schedule, changed_at=anchor))

            async def all_firing() -> bool:
                seen = {run.job_id for run, _ in bus.runs}
                return seen >= plan.keys()

            await wait_until(all_firing, timeout=15, what="every job fired once")

            # Mid-run: both replicas are firing; kill one while the load goes on.
            await asyncio.sleep(2.5)
            assert await a.fired(http) > 0, "replica a never fired before the kill"
            killed = datetime.now(UTC)
            await a.kill()
            killed_at = len(bus.runs)

            async def b_alone() -> bool:
                return len(bus.runs) >= killed_at + 300  # ~2 s of load on the survivor

            await wait_until(b_alone, timeout=10, what="the surviving replica firing alone")
            await a.start(http)

            async def a_back() -> bool:
                return await a.fired(http) > 0

            await wait_until(a_back, timeout=10, what="the restarted replica firing again")
            back = datetime.now(UTC)
            await asyncio.sleep(2.5)

            # Stop the load: delete every job, then wait until the outbox is drained and nothing arrives.
            cut = datetime.now(UTC)
            for job_id in plan:
                await bus.publish(jobs.deleted(job_id, version=2))
            fired_rows = await wait_until(
                lambda: settled(database_url, bus), timeout=20, what="deletions applied and the outbox drained"
            )
        finally:
            await bus.close()

    window_end = cut - SECOND
    by_slot: dict[tuple[uuid.UUID, datetime], set[uuid.UUID]] = defaultdict(set)
    bodies: dict[uuid.UUID, set[bytes]] = defaultdict(set)
    for run, message in bus.runs:
        assert run.scheduled_for is not None
        assert run.execution_id == execution_id_for(run.job_id, run.scheduled_for)
        by_slot[(run.job_id, run.scheduled_for)].add(run.execution_id)
        bodies[run.execution_id].add(message.body)

    missing: list[tuple[uuid.UUID, datetime]] = []
    checked = 0
    for job_id, (schedule, anchor) in plan.items():
        received = sorted(slot for (j, slot) in by_slot if j == job_id)
        grid = implied_slots(schedule, anchor, received[0], received[-1])
        assert set(received) <= set(grid), f"job {job_id} fired off its schedule: {sorted(set(received) - set(grid))}"
        assert received[0] < killed, "the window must start before the kill"
        assert back < window_end, "the window must end after the restart"
        expected = implied_slots(schedule, anchor, received[0], window_end)
        missing += [(job_id, slot) for slot in expected if (job_id, slot) not in by_slot]
        checked += len(expected)

    distinct = len(by_slot)
    duplicates = len(bus.runs) - distinct
    duplicated = {eid: len(b) for eid, b in bodies.items() if len(b) > 1}
    print(  # the figures the issue asks to report (shown with -s)
        f"\nsigkill exactness: {checked} implied slots checked, {distinct} distinct execution ids received, "
        f"{len(missing)} missing, {duplicates} raw duplicate messages (at-least-once outbox redelivery)"
    )
    assert not missing, f"{len(missing)} implied slots never requested, e.g. {missing[:5]}"
    assert all(len(ids) == 1 for ids in by_slot.values())
    assert not duplicated, f"a slot was requested twice with different contents: {list(duplicated)[:5]}"
    assert duplicates <= OUTBOX_BATCH_SIZE, f"{duplicates} duplicates exceed one relay batch"
    # The fires table agrees: one fired row per slot, nothing recorded as missed.
    fired = {(r["job_id"], r["nominal_time"]) for r in fired_rows if r["outcome"] == "fired"}
    assert len(fired) == len(fired_rows), "some slot was recorded as missed"
    assert fired == set(by_slot), "the fires table and the received run.requested disagree"


async def settled(database_url: str, bus: Bus) -> list[asyncpg.Record] | None:
    """The fires table once every schedule is deleted, the outbox is empty and every fire arrived."""
    conn = await asyncpg.connect(database_url)
    try:
        active = await conn.fetchval("SELECT count(*) FROM scheduler.schedules WHERE state <> 'deleted'")
        pending = await conn.fetchval("SELECT count(*) FROM scheduler.outbox")
        rows: list[asyncpg.Record] = await conn.fetch("SELECT job_id, nominal_time, outcome FROM scheduler.fires")
    finally:
        await conn.close()
    received = {(run.job_id, run.scheduled_for) for run, _ in bus.runs}
    fired = sum(1 for r in rows if r["outcome"] == "fired")
    if active or pending or len(received) < fired:
        return None
    count = len(bus.runs)
    await asyncio.sleep(0.3)  # and nothing more arrives
    return rows if len(bus.runs) == count else None
