"""The bare-minimum side: :mod:`bench_bare_worker` (a process per run, its claim and outcome in
PostgreSQL, acknowledged after the commit) on its own vhost of the same RabbitMQ and its own database.

It gets the same requests from the same publisher as ours and Celery (persistent, confirmed). A run is
done when its row is ``succeeded``, as a run of ours is done when its outcome is in job-api's read model.
Its figures are the floor the issue's guarantees cost on this machine, not a peer to beat.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from bench_bare_worker import BROKER_ENV, CONCURRENCY_ENV, DATABASE_ENV, DDL, QUEUE, STEPS_ENV, WORKDIRS_ENV
from bench_common import (
    CLUSTER,
    Latency,
    Sampler,
    pg_backends,
    postgres_cluster,
    publish,
    rabbit_pids,
    stop_group,
    wait_consuming,
)
from bench_result import Result, Scenario

HERE = Path(__file__).resolve().parent
BARE_KINDS = ("shell", "python")
"""The job kinds the bare worker has a process for (``BENCH_BARE_STEPS``)."""
WARMUP_RUNS = 50
POLL_SECONDS = 0.1


def message(tag: str) -> aio_pika.Message:
    body = {"id": str(uuid.uuid4()), "tag": tag, "requested_at": time.time()}
    return aio_pika.Message(
        json.dumps(body).encode(), content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
    )


class BareBench:
    """The bare worker up on ``amqp_url`` and ``database_url`` (both its own); scenarios one after the other."""

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
        self.amqp_url = amqp_url
        self.database_url = database_url
        self.concurrency = concurrency
        self.time_limit = time_limit
        self.log_dir = log_dir
        self.steps = steps
        self.workdirs = workdirs
        self.process: subprocess.Popen[bytes] | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._db: asyncpg.Connection | None = None

    @property
    def system(self) -> str:
        return f"bare minimum ({self.steps}) x{self.concurrency}"

    async def __aenter__(self) -> BareBench:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMATION_", "BENCH_"))}
        env |= {
            BROKER_ENV: self.amqp_url,
            DATABASE_ENV: self.database_url,
            CONCURRENCY_ENV: str(self.concurrency),
            WORKDIRS_ENV: self.workdirs or "",
            STEPS_ENV: self.steps,
        }
        try:
            self._db = await asyncpg.connect(self.database_url)
            await self._db.execute(DDL)
            self.process = await asyncio.to_thread(self._spawn, env)
            self._connection = await aio_pika.connect(self.amqp_url)
            await wait_consuming(self._connection, QUEUE, self.process, "bare", self.log_dir)
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = self._channel.default_exchange
            await self._warm_up()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"bare-worker-{self.steps}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, str(HERE / "bench_bare_worker.py")],
                cwd=HERE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()
        if self.process is not None:
            await stop_group(self.process)
        if self._db is not None:
            await self._db.close()

    async def _warm_up(self) -> None:
        assert self._exchange is not None
        tag = f"warmup{uuid.uuid4().hex}"
        await publish(self._exchange, QUEUE, lambda _i: message(tag), WARMUP_RUNS, None)
        done, _ = await self._wait(tag, WARMUP_RUNS, time.monotonic() + 60)
        if done < WARMUP_RUNS:
            raise RuntimeError(f"the bare worker's warm-up did not finish; see {self.log_dir}")

    async def _wait(self, tag: str, count: int, deadline: float) -> tuple[int, float | None]:
        """Runs of ``tag`` succeeded, and when the last of them finished (epoch seconds), once all are or
        at the deadline."""
        assert self._db is not None
        while True:
            row = await self._db.fetchrow(
                "SELECT count(*) AS done, max(finished_at) AS last FROM bare_runs"
                " WHERE tag = $1 AND status = 'succeeded'",
                tag,
            )
            assert row is not None
            done, last = int(row["done"]), row["last"]
            if done >= count or time.monotonic() > deadline:
                return done, last
            await asyncio.sleep(POLL_SECONDS)

    async def run(self, scenario: Scenario) -> Result:
        assert self._exchange is not None
        assert self.process is not None
        assert self._db is not None
        tag = uuid.uuid4().hex
        groups = {"postgres": await pg_backends(self._db), "rabbitmq": rabbit_pids(), "bench": [os.getpid()]}
        async with Sampler(trees={"worker": self.process.pid}, groups=groups, servers=postgres_cluster()) as sampler:
            deadline = time.monotonic() + self.time_limit
            published = await publish(self._exchange, QUEUE, lambda _i: message(tag), scenario.count, scenario.rate)
            done, last = await self._wait(tag, scenario.count, deadline)
        if done < scenario.count:  # time limit: drop what is still queued, give the prefetched a moment
            assert self._channel is not None
            await (await self._channel.get_queue(QUEUE, ensure=False)).purge()
            await asyncio.sleep(2)
        rows = await self._db.fetch("SELECT requested_at, started_at FROM bare_runs WHERE tag = $1", tag)
        failed = await self._db.fetchval(
            "SELECT count(*) FROM bare_runs WHERE tag = $1 AND status NOT IN ('succeeded', 'running')", tag
        )
        worker = sampler.usage["worker"]
        result = Result(
            system=self.system,
            scenario=scenario,
            published=published,
            done=done,
            last_done=last if last is not None else published.first,
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
