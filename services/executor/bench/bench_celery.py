"""The Celery side: a Celery 5 worker (prefork or threads pool) on its own vhost of the same RabbitMQ.

The worker is ``python -m celery -A bench_celery_app worker`` as its own process group, with gossip,
mingle and heartbeats off (nothing else talks to it) and otherwise Celery's defaults: prefetch
multiplier 4, acknowledgement before the task runs (``acks_late`` off), classic durable queue
``celery``. Task messages are built by Celery's own ``app.amqp.as_task_v2`` and published with the
benchmark's shared aio-pika publisher (persistent, confirmed), so both systems get the same client. A
task counts as done when its body ran: it writes one line with the request and start times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from bench_celery_app import BROKER_ENV, OUT_ENV, TASK_NAME, app
from bench_common import Latency, Sampler, publish
from bench_result import Result, Scenario

HERE = Path(__file__).resolve().parent
QUEUE = "celery"
WARMUP_TASKS = 50
POLL_SECONDS = 0.1
STOP_GRACE_SECONDS = 15.0


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

    def count(self, tag: str) -> int:
        return len(self.by_tag.get(tag, []))


def message(tag: str) -> aio_pika.Message:
    """A ``bench.noop`` task message, exactly as Celery's client would encode it (protocol 2, JSON)."""
    task_id = str(uuid.uuid4())
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


class CeleryBench:
    """One Celery worker (one pool kind) up; scenarios run one after the other."""

    def __init__(self, amqp_url: str, pool: str, concurrency: int, time_limit: float, log_dir: Path) -> None:
        self.amqp_url = amqp_url
        self.pool = pool
        self.concurrency = concurrency
        self.time_limit = time_limit
        self.log_dir = log_dir
        self.out = log_dir / f"celery-{pool}-records"
        self.records = Records(self.out)
        self.process: subprocess.Popen[bytes] | None = None
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._channel: AbstractChannel | None = None

    @property
    def system(self) -> str:
        return f"celery {self.pool} x{self.concurrency}"

    async def __aenter__(self) -> CeleryBench:
        self.out.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATION_")}
        env |= {BROKER_ENV: self.amqp_url, OUT_ENV: str(self.out), "PYTHONPATH": str(HERE)}
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
            f"bench-{self.pool}@127.0.0.1",
        ]
        self.process = await asyncio.to_thread(self._spawn, argv, env)
        try:
            self._connection = await aio_pika.connect(self.amqp_url)
            await self._wait_consuming()
            channel = await self._connection.channel(publisher_confirms=True)
            self._channel = channel
            self._exchange = await channel.get_exchange(QUEUE, ensure=False)
            await self._warm_up()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"celery-{self.pool}.log").open("ab") as log:
            return subprocess.Popen(
                argv, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await asyncio.to_thread(self.process.wait, 5)

    async def _wait_consuming(self) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the celery worker exited ({self.process.returncode}); see {self.log_dir}")
            channel = await self._connection.channel()
            try:
                queue = await channel.declare_queue(QUEUE, passive=True)
                if queue.declaration_result.consumer_count:
                    return
            except aiormq.exceptions.ChannelNotFoundEntity:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
            await asyncio.sleep(0.2)
        raise TimeoutError(f"the celery {self.pool} worker was not consuming after 60 s")

    async def _warm_up(self) -> None:
        assert self._exchange is not None
        await publish(self._exchange, QUEUE, lambda _i: message("warmup"), WARMUP_TASKS, None)
        if await self._wait("warmup", WARMUP_TASKS, time.monotonic() + 60) < WARMUP_TASKS:
            raise RuntimeError(f"celery {self.pool} warm-up did not finish; see {self.log_dir}")

    async def _wait(self, tag: str, count: int, deadline: float) -> int:
        while True:
            self.records.refresh()
            done = self.records.count(tag)
            if done >= count or time.monotonic() > deadline:
                return done
            await asyncio.sleep(POLL_SECONDS)

    async def run(self, scenario: Scenario) -> Result:
        """Offer the scenario and wait, within the time limit, until every task body ran."""
        assert self._exchange is not None
        assert self.process is not None
        tag = uuid.uuid4().hex
        async with Sampler(trees={"worker": self.process.pid}, groups={"bench": [os.getpid()]}) as sampler:
            deadline = time.monotonic() + self.time_limit
            published = await publish(self._exchange, QUEUE, lambda _i: message(tag), scenario.count, scenario.rate)
            done = await self._wait(tag, scenario.count, deadline)
        if done < scenario.count:  # time limit: drop what is still queued, give the prefetched a moment
            assert self._channel is not None
            await (await self._channel.get_queue(QUEUE, ensure=False)).purge()
            await asyncio.sleep(2)
        records = self.records.by_tag.get(tag, [])
        worker = sampler.usage["worker"]
        result = Result(
            system=self.system,
            scenario=scenario,
            published=published,
            done=done,
            last_done=max((started for _, started in records), default=published.first),
            start=Latency.of(started - requested for requested, started in records),
            rss_peak=worker.rss_peak,
            pss_peak=worker.pss_peak,
            durable=False,
            timed_out=done < scenario.count,
        )
        runs = max(done, 1)
        result.cpu_ms_per_run = {
            "worker (parent + pool)": worker.cpu_seconds * 1000 / runs,
            "this benchmark (publisher, polls)": sampler.group_cpu.get("bench", 0.0) * 1000 / runs,
        }
        result.notes = [
            f"worker RSS peak {worker.rss_peak / 2**20:.0f} MiB (parent alone {worker.parent_rss_peak / 2**20:.0f} MiB,"
            f" {worker.children_peak} pool processes)",
            f"machine CPU busy {sampler.machine_busy_percent:.0f}% over the window",
        ]
        return result
