"""A worker process of a system compared with ours (Celery, the bare minimum), as the benchmark drives it.

Started as its own process group with its output in the log directory, on a vhost of its own; ready
once its queue has a consumer and a warm-up batch is done; fed a scenario's requests by the shared
publisher, and sampled meanwhile; stopped with SIGTERM (SIGKILL after a grace period). A subclass says
what the worker is, what a request looks like and when a request counts as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import aio_pika
import aiormq
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from bench_common import Published, Sampler, pg_backends, postgres_cluster, publish, rabbit_pids
from bench_result import Result, Scenario

HERE = Path(__file__).resolve().parent
WARMUP_REQUESTS = 50
POLL_SECONDS = 0.1
STOP_GRACE_SECONDS = 15.0


async def wait_consuming(
    connection: AbstractConnection, queue: str, process: subprocess.Popen[bytes], what: str, log_dir: Path
) -> None:
    """Until ``queue`` has a consumer (a peer's worker is up), within 60 s; fails at once if ``process`` exits."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {what} worker exited ({process.returncode}); see {log_dir}")
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            if declared.declaration_result.consumer_count:
                return
        except aiormq.exceptions.ChannelNotFoundEntity:
            pass
        finally:
            if not channel.is_closed:
                await channel.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the {what} worker was not consuming after 60 s")


async def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a worker's process group, SIGKILL after ``STOP_GRACE_SECONDS``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait, 5)


@dataclass
class Measured:
    """What one scenario gave: its tag, what was published, how many were done and when the last was."""

    tag: str
    published: Published
    done: int
    last: float | None
    sampler: Sampler


class PeerWorker:
    """One worker up; scenarios run one after the other (``async with``, then :meth:`measure`)."""

    queue: str
    """The queue the worker consumes and the requests are routed to."""

    def __init__(self, amqp_url: str, time_limit: float, log_dir: Path) -> None:
        self.amqp_url = amqp_url
        self.time_limit = time_limit
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._db: asyncpg.Connection | None = None
        """Where the worker records what it did (None: it records nothing in PostgreSQL)."""

    @property
    def system(self) -> str:
        raise NotImplementedError

    @property
    def log_name(self) -> str:
        """The worker's log file in the log directory."""
        raise NotImplementedError

    def message(self, tag: str) -> aio_pika.Message:
        """One request of the scenario ``tag``."""
        raise NotImplementedError

    async def _done(self, tag: str) -> tuple[int, float | None]:
        """Requests of ``tag`` done so far, and when the last of them was (epoch seconds; None: none yet)."""
        raise NotImplementedError

    async def run(self, scenario: Scenario) -> Result:
        """The scenario's figures (:meth:`measure`, then what the worker recorded)."""
        raise NotImplementedError

    async def _exchange_of(self, channel: AbstractChannel) -> AbstractExchange:
        """The exchange the requests are published to (routing key: :attr:`queue`)."""
        return channel.default_exchange

    async def _start(self, argv: list[str], env: dict[str, str]) -> None:
        """Start the worker, wait until it consumes, open the publishing channel and warm it up."""
        try:
            self.process = await asyncio.to_thread(self._spawn, argv, env)
            self._connection = await aio_pika.connect(self.amqp_url)
            await wait_consuming(self._connection, self.queue, self.process, self.system, self.log_dir)
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._exchange_of(self._channel)
            await self._warm_up()
        except BaseException:
            await self.__aexit__()
            raise

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / self.log_name).open("ab") as log:
            return subprocess.Popen(
                argv, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def __aenter__(self) -> Self:
        raise NotImplementedError

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
        await publish(self._exchange, self.queue, lambda _i: self.message(tag), WARMUP_REQUESTS, None)
        done, _ = await self._wait(tag, WARMUP_REQUESTS, time.monotonic() + 60)
        if done < WARMUP_REQUESTS:
            raise RuntimeError(f"the {self.system} warm-up did not finish; see {self.log_dir}")

    async def _wait(self, tag: str, count: int, deadline: float) -> tuple[int, float | None]:
        while True:
            done, last = await self._done(tag)
            if done >= count or time.monotonic() > deadline:
                return done, last
            await asyncio.sleep(POLL_SECONDS)

    async def measure(self, scenario: Scenario) -> Measured:
        """Offer the scenario and wait, within the time limit, until every request is done; sampled
        meanwhile: the worker's tree, its database's backends and PostgreSQL's cluster (when it has a
        database), RabbitMQ, this process."""
        assert self._exchange is not None
        assert self.process is not None
        tag = uuid.uuid4().hex
        backends = await pg_backends(self._db) if self._db is not None else []
        groups = {"postgres": backends, "rabbitmq": rabbit_pids(), "bench": [os.getpid()]}
        servers = postgres_cluster() if self._db is not None else {}
        async with Sampler(trees={"worker": self.process.pid}, groups=groups, servers=servers) as sampler:
            deadline = time.monotonic() + self.time_limit
            published = await publish(
                self._exchange, self.queue, lambda _i: self.message(tag), scenario.count, scenario.rate
            )
            done, last = await self._wait(tag, scenario.count, deadline)
        if done < scenario.count:  # time limit: drop what is still queued, give the prefetched a moment
            assert self._channel is not None
            await (await self._channel.get_queue(self.queue, ensure=False)).purge()
            await asyncio.sleep(2)
        return Measured(tag, published, done, last, sampler)
