"""The Celery side: a Celery 5 worker (prefork or threads pool) on its own vhost of the same RabbitMQ.

The worker is ``python -m celery -A bench_celery_app worker`` as its own process group, with gossip,
mingle and heartbeats off (nothing else talks to it). Task messages are built by Celery's own
``app.amqp.as_task_v2`` and published with the benchmark's shared aio-pika publisher (persistent,
confirmed), so both systems get the same client. Two configurations (:mod:`bench_celery_app`):

- **no-op**: Celery's defaults (prefetch multiplier 4, acknowledgement before the task runs, classic
  durable queue ``celery``, no result backend). A task counts as done when its body ran: it writes one
  line with the request and start times.
- **with history**: the database result backend in a fresh PostgreSQL database of its own, states
  ``STARTED`` and ``SUCCESS`` recorded, acknowledgement after the result is stored, a quorum queue. A
  task counts as done when its ``SUCCESS`` row is committed, as a run of ours counts when its outcome
  is in job-api's read model.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
import sqlalchemy
from aio_pika.abc import AbstractChannel, AbstractExchange
from bench_celery_app import BACKEND_ENV, BROKER_ENV, OUT_ENV, TASK_NAME, app
from bench_common import CLUSTER, Latency
from bench_result import Result, Scenario
from bench_worker import PeerWorker
from celery.backends.database.models import ResultModelBase  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
QUEUE = "celery"


class Records:
    """Reads the lines the worker processes append, incrementally."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}
        self.by_tag: dict[str, list[tuple[float, float]]] = {}

    def refresh(self) -> None:
        for path in sorted(self.directory.glob("*.txt")):
            with path.open("rb") as file:
                file.seek(self._offsets.get(path, 0))
                data = file.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for line in complete.decode().splitlines():
                tag, requested, started = line.split()
                self.by_tag.setdefault(tag, []).append((float(requested), float(started)))


def message(tag: str) -> aio_pika.Message:
    """A ``bench.noop`` task message, exactly as Celery's client would encode it (protocol 2, JSON).

    The task id starts with the scenario's tag, so the result backend's rows of a scenario can be counted.
    """
    task_id = f"{tag}-{uuid.uuid4()}"
    requested = time.time()
    headers, _properties, body, _sent = app.amqp.as_task_v2(task_id, TASK_NAME, args=(tag, requested))
    return aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        content_encoding="utf-8",
        headers={k: v for k, v in headers.items() if v is not None and k != "timelimit"},
        correlation_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=0,
    )


def backend_url(database_url: str) -> str:
    """Celery's database result backend URL for a ``postgresql://`` database URL (SQLAlchemy on psycopg 3)."""
    parts = urlsplit(database_url)
    return "db+" + urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, parts.query, parts.fragment))


def create_backend_tables(database_url: str) -> None:
    """Celery's result tables, made before the worker starts: its processes would race to create them."""
    engine = sqlalchemy.create_engine(backend_url(database_url).removeprefix("db+"))
    try:
        ResultModelBase.metadata.create_all(engine)
    finally:
        engine.dispose()


class CeleryBench(PeerWorker):
    """One Celery worker (one pool kind, one configuration) up; scenarios run one after the other.

    ``history``: the URL of a database of its own for Celery's result backend (the configuration
    with history); None for the no-op configuration.
    """

    queue = QUEUE

    def __init__(
        self,
        amqp_url: str,
        pool: str,
        concurrency: int,
        time_limit: float,
        log_dir: Path,
        *,
        history: str | None = None,
    ) -> None:
        super().__init__(amqp_url, time_limit, log_dir)
        self.pool = pool
        self.concurrency = concurrency
        self.history = history
        self.out = log_dir / f"celery-{self.name}-records"
        self.records = Records(self.out)

    @property
    def name(self) -> str:
        return self.pool + ("-history" if self.history else "")

    @property
    def system(self) -> str:
        return f"celery {self.pool} x{self.concurrency}" + (" +history" if self.history else "")

    @property
    def log_name(self) -> str:
        return f"celery-{self.name}.log"

    def message(self, tag: str) -> aio_pika.Message:
        return message(tag)

    async def _exchange_of(self, channel: AbstractChannel) -> AbstractExchange:
        return await channel.get_exchange(QUEUE, ensure=False)

    async def __aenter__(self) -> CeleryBench:
        self.out.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMATION_", "BENCH_CELERY_"))}
        env |= {BROKER_ENV: self.amqp_url, OUT_ENV: str(self.out), "PYTHONPATH": str(HERE)}
        if self.history is not None:
            await asyncio.to_thread(create_backend_tables, self.history)
            self._db = await asyncpg.connect(self.history)
            env[BACKEND_ENV] = backend_url(self.history)
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench_celery_app",
            "worker",
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"bench-{self.name}@127.0.0.1",
        ]
        await self._start(argv, env)
        return self

    async def _done(self, tag: str) -> tuple[int, float | None]:
        """Tasks of ``tag`` done so far, and when the last of them was (epoch seconds; None: none yet).

        No-op: the bodies that ran (their lines). With history: the ``SUCCESS`` rows committed.
        """
        if self._db is None:
            self.records.refresh()
            records = self.records.by_tag.get(tag, [])
            return len(records), max((started for _, started in records), default=None)
        row = await self._db.fetchrow(
            "SELECT count(*) AS done, max(date_done) AS last FROM celery_taskmeta"
            " WHERE task_id LIKE $1 AND status = 'SUCCESS'",
            f"{tag}-%",
        )
        assert row is not None
        last = row["last"]  # Celery writes its naive UTC time
        return int(row["done"]), None if last is None else last.replace(tzinfo=UTC).timestamp()

    async def run(self, scenario: Scenario) -> Result:
        """Offer the scenario and wait, within the time limit, until every task is done."""
        measured = await self.measure(scenario)
        tag, done, last, sampler = measured.tag, measured.done, measured.last, measured.sampler
        published = measured.published
        self.records.refresh()
        records = self.records.by_tag.get(tag, [])
        worker = sampler.usage["worker"]
        result = Result(
            system=self.system,
            scenario=scenario,
            published=published,
            done=done,
            last_done=last if last is not None else published.first,
            start=Latency.of(started - requested for requested, started in records),
            rss_peak=worker.rss_peak,
            pss_peak=worker.pss_peak,
            durable=self.history is not None,
            peer=True,
            timed_out=done < scenario.count,
        )
        runs = max(done, 1)
        result.cpu_ms_per_run = {"worker (parent + pool)": worker.cpu_seconds * 1000 / runs}
        if self.history is not None:
            result.cpu_ms_per_run |= {
                "postgres (result backend db backends)": sampler.group_cpu.get("postgres", 0.0) * 1000 / runs,
                "postgres (whole cluster, shared)": sampler.group_cpu.get(CLUSTER, 0.0) * 1000 / runs,
            }
        result.cpu_ms_per_run |= {
            "rabbitmq (whole broker, shared)": sampler.group_cpu.get("rabbitmq", 0.0) * 1000 / runs,
            "this benchmark (publisher, polls)": sampler.group_cpu.get("bench", 0.0) * 1000 / runs,
        }
        result.notes = [
            f"worker RSS peak {worker.rss_peak / 2**20:.0f} MiB (parent alone {worker.parent_rss_peak / 2**20:.0f} MiB,"
            f" {worker.children_peak} pool processes)",
            f"machine CPU busy {sampler.machine_busy_percent:.0f}% over the window",
        ]
        if self.history is not None:
            result.notes.insert(0, f"result backend: {done} SUCCESS rows of {scenario.count} tasks")
        return result
