"""The bare-minimum side: :mod:`bench_bare_worker` (a process per run, its claim and outcome in
PostgreSQL, acknowledged after the commit) on its own vhost of the same RabbitMQ and its own database.

It gets the same requests from the same publisher as ours and Celery (persistent, confirmed). A run is
done when its row is ``succeeded``, as a run of ours is done when its outcome is in job-api's read model.
Its figures are what those guarantees cost done the simplest way (for shell jobs, the floor on this
machine), not a peer to beat.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg
from bench_bare_worker import BROKER_ENV, CONCURRENCY_ENV, DATABASE_ENV, DDL, QUEUE, STEPS_ENV, WORKDIRS_ENV
from bench_common import CLUSTER, Latency
from bench_result import Result, Scenario
from bench_worker import HERE, PeerWorker

BARE_KINDS = ("shell", "python")
"""The job kinds the bare worker has a process for (``BENCH_BARE_STEPS``)."""


class BareBench(PeerWorker):
    """The bare worker for one job kind up on ``amqp_url`` and ``database_url`` (both its own)."""

    queue = QUEUE

    def __init__(
        self,
        amqp_url: str,
        database_url: str,
        concurrency: int,
        time_limit: float,
        log_dir: Path,
        *,
        steps: str,
        workdirs: str | None,
    ) -> None:
        super().__init__(amqp_url, time_limit, log_dir)
        self.database_url = database_url
        self.concurrency = concurrency
        self.steps = steps
        self.workdirs = workdirs

    @property
    def system(self) -> str:
        return f"bare minimum ({self.steps}) x{self.concurrency}"

    @property
    def log_name(self) -> str:
        return f"bare-worker-{self.steps}.log"

    def message(self, tag: str) -> aio_pika.Message:
        body = {"id": str(uuid.uuid4()), "tag": tag, "requested_at": time.time()}
        return aio_pika.Message(
            json.dumps(body).encode(), content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )

    async def __aenter__(self) -> BareBench:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMATION_", "BENCH_"))}
        env |= {
            BROKER_ENV: self.amqp_url,
            DATABASE_ENV: self.database_url,
            CONCURRENCY_ENV: str(self.concurrency),
            WORKDIRS_ENV: self.workdirs or "",
            STEPS_ENV: self.steps,
        }
        self._db = await asyncpg.connect(self.database_url)
        try:
            await self._db.execute(DDL)
        except BaseException:
            await self._db.close()
            raise
        await self._start([sys.executable, str(HERE / "bench_bare_worker.py")], env)
        return self

    async def _done(self, tag: str) -> tuple[int, float | None]:
        """Runs of ``tag`` succeeded, and when the last of them finished (epoch seconds)."""
        assert self._db is not None
        row = await self._db.fetchrow(
            "SELECT count(*) AS done, max(finished_at) AS last FROM bare_runs WHERE tag = $1 AND status = 'succeeded'",
            tag,
        )
        assert row is not None
        return int(row["done"]), row["last"]

    async def run(self, scenario: Scenario) -> Result:
        measured = await self.measure(scenario)
        assert self._db is not None
        rows = await self._db.fetch("SELECT requested_at, started_at FROM bare_runs WHERE tag = $1", measured.tag)
        failed = await self._db.fetchval(
            "SELECT count(*) FROM bare_runs WHERE tag = $1 AND status NOT IN ('succeeded', 'running')", measured.tag
        )
        sampler, done = measured.sampler, measured.done
        worker = sampler.usage["worker"]
        result = Result(
            system=self.system,
            scenario=scenario,
            published=measured.published,
            done=done,
            last_done=measured.last if measured.last is not None else measured.published.first,
            start=Latency.of(r["started_at"] - r["requested_at"] for r in rows),
            rss_peak=worker.rss_peak,
            pss_peak=worker.pss_peak,
            durable=True,
            peer=True,
            floor=True,
            steps=self.steps,
            timed_out=done < scenario.count,
            failed=int(failed),
        )
        runs = max(done, 1)
        result.cpu_ms_per_run = {
            "worker (itself)": worker.own_cpu_seconds * 1000 / runs,
            "its run processes": (worker.cpu_seconds - worker.own_cpu_seconds) * 1000 / runs,
            "postgres (its db backends)": sampler.group_cpu.get("postgres", 0.0) * 1000 / runs,
            "postgres (whole cluster, shared)": sampler.group_cpu.get(CLUSTER, 0.0) * 1000 / runs,
            "rabbitmq (whole broker, shared)": sampler.group_cpu.get("rabbitmq", 0.0) * 1000 / runs,
            "this benchmark (publisher, polls)": sampler.group_cpu.get("bench", 0.0) * 1000 / runs,
        }
        result.notes = [
            f"{done} succeeded rows of {scenario.count} requests",
            f"machine CPU busy {sampler.machine_busy_percent:.0f}% over the window",
        ]
        return result
