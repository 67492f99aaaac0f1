"""The platform side: job-api and the executor as real processes, requests straight to ``automation.commands``.

A fresh database and vhost; ``python -m automation_job_api serve`` and ``python -m automation_executor
serve`` started by :class:`automation_suite.Suite` (migrations first); ``run.requested`` CloudEvents, as the
scheduler or job-api would publish them, go to ``automation.commands``. A run counts as done when
job-api's read model (``job_api.executions``, what ``GET /api/v1/executions`` serves) holds its terminal
status: the executor has claimed the attempt, run the child, committed the outcome with its outbox event,
the relay has published it and job-api has recorded it. Each scenario uses its own job id, so the queries
see only its runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import aio_pika
import asyncpg
import httpx
from aio_pika.abc import AbstractChannel, AbstractExchange
from bench_common import (
    CLUSTER,
    Latency,
    Published,
    Sampler,
    pg_backends,
    postgres_cluster,
    publish,
    rabbit_pids,
)
from bench_result import Result, Scenario

from automation_contracts import build_event
from automation_executor.launch import Launcher
from automation_executor.testing import run_request_data
from automation_messaging import CLOUDEVENTS_JSON
from automation_messaging.topology import COMMANDS, EXECUTOR_RUNS, RUN_REQUESTED
from automation_suite import Suite, SuiteConfig
from automation_testing import fresh_database, fresh_vhost

TERMINAL = ["succeeded", "failed", "timed_out", "cancelled"]
STEP_STARTED = re.compile(r"^step (\S+) \((\S+)\) started$")
WARMUP_RUNS = 20
LOG_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1
STATS_DELAY_SECONDS = 1.1
"""PostgreSQL backends report their transaction counts to ``pg_stat_database`` within a second."""
DRAIN_SECONDS = 120.0
"""After a scenario hit its time limit, how long the runs already handed out get to finish."""


@dataclass(frozen=True, slots=True)
class Platform:
    """How the platform side runs."""

    database_url: str
    amqp_url: str
    concurrency: int
    time_limit: float
    log_dir: Path
    env: Mapping[str, str]
    """Extra ``AUTOMATION_*`` settings for both services (from the caller's environment)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _suite(platform: Platform, database_url: str, amqp_url: str) -> Suite:
    env = dict(platform.env)
    env.setdefault("AUTOMATION_LOG_LEVEL", "INFO")
    env |= {
        "AUTOMATION_ENV": "development",
        "AUTOMATION_DATABASE_URL": database_url,
        "AUTOMATION_AMQP_URL": amqp_url,
        "AUTOMATION_JWT_SECRET": secrets.token_urlsafe(32),
        "AUTOMATION_ADMIN_TOKEN": secrets.token_urlsafe(32),
        "AUTOMATION_EXECUTOR_CONCURRENCY": str(platform.concurrency),
        "AUTOMATION_LOG_FORMAT": "json",
    }
    config = SuiteConfig(
        env=env,
        ports={"job-api": free_port(), "executor": free_port()},
        log_dir=platform.log_dir,
        echo=False,
    )
    return Suite(config, {"job-api": None, "executor": None})


def steps_for(kind: str, python_step: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The job's steps: one ``true`` shell step, or the no-op python step (and then the shell step)."""
    shell = {"name": "noop-shell", "type": "shell", "config": {"command": ["true"]}}
    if kind == "shell":
        return [shell]
    assert python_step is not None
    if kind == "python":
        return [dict(python_step)]
    return [dict(python_step), shell]


class Requests:
    """Builds one scenario's ``run.requested`` messages and remembers when each was requested."""

    def __init__(self, steps: Sequence[Mapping[str, Any]]) -> None:
        self.steps = steps
        self.job_id = uuid.uuid4()
        self.account_id = uuid.uuid4()
        self.requested: dict[uuid.UUID, float] = {}

    def build(self, _index: int) -> aio_pika.Message:
        data = run_request_data(self.steps, job_id=self.job_id, account_id=self.account_id, timeout_seconds=120)
        self.requested[uuid.UUID(data["execution_id"])] = datetime.fromisoformat(data["requested_at"]).timestamp()
        event = build_event(RUN_REQUESTED, source="/bench/executor", data=data)
        return aio_pika.Message(
            event.to_json_bytes(), content_type=CLOUDEVENTS_JSON, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )


async def _recorded(conn: asyncpg.Connection, job_id: uuid.UUID) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM job_api.executions WHERE job_id = $1 AND status = ANY($2::text[])", job_id, TERMINAL
    )
    return int(count)


async def _wait_recorded(
    conn: asyncpg.Connection, job_id: uuid.UUID, count: int, deadline: float, suite: Suite | None = None
) -> tuple[int, int]:
    """(runs recorded, queries this took) once all ``count`` are recorded or the deadline passed."""
    queries = 0
    while True:
        if suite is not None and (dead := suite.dead()):
            raise RuntimeError(f"a service exited during the benchmark: {dead}")
        done = await _recorded(conn, job_id)
        queries += 1
        if done >= count or time.monotonic() > deadline:
            return done, queries
        await asyncio.sleep(POLL_SECONDS)


async def _step_starts(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, float]:
    """When the child started the first step of each run, from the ``execution.log`` lines job-api kept."""
    rows = await conn.fetch(
        "SELECT execution_id, entries::text AS entries FROM job_api.execution_logs WHERE execution_id = ANY($1)", ids
    )
    starts: dict[uuid.UUID, float] = {}
    for row in rows:
        for entry in json.loads(row["entries"]):
            if entry.get("stream") == "system" and STEP_STARTED.match(entry.get("text", "")):
                ts = datetime.fromisoformat(entry["ts"]).timestamp()
                key = row["execution_id"]
                starts[key] = min(ts, starts.get(key, ts))
    return starts


METRIC_SAMPLE = re.compile(r"^(automation_executor_\w+?_(?:sum|count))(\{[^}]*\})? ([0-9.e+-]+)$")
LAUNCH = "automation_executor_child_launch_seconds"


async def _metrics(url: str) -> dict[str, float]:
    """The executor's histogram sums and counts (``name{labels}`` -> value) from its ``/metrics``."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if match := METRIC_SAMPLE.match(line):
            samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


def _launches(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """How the scenario's children were started, from ``automation_executor_child_launch_seconds``."""
    parts = []
    for launcher in get_args(Launcher):
        key = f'{{launcher="{launcher}"}}'
        count = after.get(f"{LAUNCH}_count{key}", 0.0) - before.get(f"{LAUNCH}_count{key}", 0.0)
        total = after.get(f"{LAUNCH}_sum{key}", 0.0) - before.get(f"{LAUNCH}_sum{key}", 0.0)
        if count:
            parts.append(f"{launcher} {count:.0f} (mean {total / count * 1000:.1f} ms)")
    return "launches (children; commands for the command server): " + (", ".join(parts) or "none seen in /metrics")


async def _transactions(conn: asyncpg.Connection) -> int:
    """Commits + rollbacks so far on this database (every client: executor, job-api, this benchmark)."""
    value = await conn.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(value)


class PlatformBench:
    """job-api and the executor up in a fresh database and vhost; scenarios run one after the other."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.suite: Suite | None = None
        self._stack = contextlib.AsyncExitStack()
        self._conn: asyncpg.Connection | None = None
        self._exchange: AbstractExchange | None = None
        self._channel: AbstractChannel | None = None

    async def __aenter__(self) -> PlatformBench:
        p = self.platform
        database_url = await self._stack.enter_async_context(fresh_database(p.database_url, prefix="executor_bench"))
        amqp_url = await self._stack.enter_async_context(fresh_vhost(p.amqp_url, prefix="executor-bench"))
        suite = _suite(p, database_url, amqp_url)
        await asyncio.to_thread(suite.migrate)
        suite.start()
        self.suite = suite
        self._stack.push_async_callback(asyncio.to_thread, suite.stop)
        await asyncio.to_thread(suite.wait_ready, 90.0)
        self._conn = await asyncpg.connect(database_url)
        self._stack.push_async_callback(self._conn.close)
        connection = await aio_pika.connect(amqp_url)
        self._stack.push_async_callback(connection.close)
        channel = await connection.channel(publisher_confirms=True)
        self._channel = channel
        self._exchange = await channel.get_exchange(COMMANDS, ensure=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def pid(self, service: str) -> int:
        assert self.suite is not None
        process = self.suite.processes[service].process
        assert process is not None
        return process.pid

    async def warm_up(self, steps: Sequence[Mapping[str, Any]]) -> None:
        """A few runs first, so pools, caches and the read model's queue are warm."""
        assert self._exchange is not None
        assert self._conn is not None
        requests = Requests(steps)
        await publish(self._exchange, RUN_REQUESTED, requests.build, WARMUP_RUNS, None)
        done, _ = await _wait_recorded(self._conn, requests.job_id, WARMUP_RUNS, time.monotonic() + 120, self.suite)
        if done < WARMUP_RUNS:
            where = self.platform.log_dir
            raise RuntimeError(f"warm-up: only {done}/{WARMUP_RUNS} runs recorded in 120 s; see {where}")
        rows = await self._conn.fetch(
            "SELECT status, error FROM job_api.executions WHERE job_id = $1 AND status <> 'succeeded'", requests.job_id
        )
        if rows:
            raise RuntimeError(f"warm-up runs did not succeed: {rows[0]['status']}: {rows[0]['error']}")

    async def run(self, system: str, steps: Sequence[Mapping[str, Any]], scenario: Scenario) -> Result:
        """Offer the scenario and wait, within the time limit, until every outcome is in the read model."""
        assert self._exchange is not None
        assert self._conn is not None
        conn = self._conn
        requests = Requests(steps)
        sampler = Sampler(
            trees={"executor": self.pid("executor"), "job-api": self.pid("job-api")},
            groups={"postgres": await pg_backends(conn), "rabbitmq": rabbit_pids(), "bench": [os.getpid()]},
            servers=postgres_cluster(),
        )
        url = self.suite.config.url("executor") if self.suite is not None else ""
        before = await _metrics(url)
        xacts = await _transactions(conn)
        async with sampler:
            deadline = time.monotonic() + self.platform.time_limit
            published = await publish(self._exchange, RUN_REQUESTED, requests.build, scenario.count, scenario.rate)
            done, polls = await _wait_recorded(conn, requests.job_id, scenario.count, deadline, self.suite)
        await asyncio.sleep(STATS_DELAY_SECONDS)
        # Less this benchmark's own queries: the polls and the first reading itself.
        per_run = (await _transactions(conn) - xacts - polls - 1) / max(done, 1)
        if done < scenario.count:
            await self._abandon()
        result = await self._result(system, scenario, requests, published, done=done, sampler=sampler)
        result.notes.append(_launches(before, await _metrics(url)))
        result.notes.append(f"PostgreSQL transactions on the bench database: {per_run:.1f} per run (every client)")
        return result

    async def _abandon(self) -> None:
        """After the time limit: drop what is still queued and let what was handed out finish."""
        assert self._channel is not None
        assert self._conn is not None
        queue = await self._channel.get_queue(EXECUTOR_RUNS, ensure=False)
        await queue.purge()
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            running = await self._conn.fetchval("SELECT count(*) FROM executor.attempts WHERE status = 'running'")
            if not running:
                return
            await asyncio.sleep(0.5)

    async def _result(
        self, system: str, scenario: Scenario, requests: Requests, published: Published, *, done: int, sampler: Sampler
    ) -> Result:
        assert self._conn is not None
        conn = self._conn
        rows = await conn.fetch(
            "SELECT id, status, started_at, updated_at FROM job_api.executions WHERE job_id = $1", requests.job_id
        )
        finished = [r for r in rows if r["status"] in TERMINAL]
        attempts = await conn.fetch(
            "SELECT execution_id, started_at, finished_at, lost_count FROM executor.attempts WHERE job_id = $1",
            requests.job_id,
        )
        ids = [r["id"] for r in finished]
        grace = time.monotonic() + LOG_GRACE_SECONDS
        starts = await _step_starts(conn, ids)
        while len(starts) < len(ids) and time.monotonic() < grace:
            await asyncio.sleep(0.5)
            starts = await _step_starts(conn, ids)
        asked = requests.requested
        by_status: dict[str, int] = {}
        for r in rows:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        ended = {a["execution_id"]: a["finished_at"] for a in attempts if a["finished_at"] is not None}
        updated = {r["id"]: r["updated_at"] for r in finished}
        result = Result(
            system=system,
            scenario=scenario,
            published=published,
            done=done,
            last_done=max((r["updated_at"].timestamp() for r in finished), default=published.first),
            start=Latency.of(r["started_at"].timestamp() - asked[r["id"]] for r in finished if r["started_at"]),
            rss_peak=sampler.usage["executor"].rss_peak,
            pss_peak=sampler.usage["executor"].pss_peak,
            durable=True,
            timed_out=done < scenario.count,
            failed=sum(1 for r in finished if r["status"] != "succeeded"),
        )
        result.extra_latency = {
            "request -> first step running in the child": Latency.of(t - asked[i] for i, t in starts.items()),
            "attempt started_at -> finished_at (executor)": Latency.of(
                (a["finished_at"] - a["started_at"]).total_seconds() for a in attempts if a["finished_at"] is not None
            ),
            "attempt finished_at -> recorded by job-api": Latency.of(
                (updated[i] - t).total_seconds() for i, t in ended.items() if i in updated
            ),
        }
        runs = max(done, 1)
        executor = sampler.usage["executor"]
        result.cpu_ms_per_run = {
            "executor process": executor.own_cpu_seconds * 1000 / runs,
            "executor descendants (fork server, children, step commands)": (
                executor.cpu_seconds - executor.own_cpu_seconds
            )
            * 1000
            / runs,
            "job-api": sampler.usage["job-api"].cpu_seconds * 1000 / runs,
            "postgres (bench db backends)": sampler.group_cpu.get("postgres", 0.0) * 1000 / runs,
            "postgres (whole cluster, shared)": sampler.group_cpu.get(CLUSTER, 0.0) * 1000 / runs,
            "rabbitmq (whole broker, shared)": sampler.group_cpu.get("rabbitmq", 0.0) * 1000 / runs,
            "this benchmark (publisher, polls)": sampler.group_cpu.get("bench", 0.0) * 1000 / runs,
        }
        lost = sum(int(a["lost_count"]) for a in attempts)
        result.notes = [
            "statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())),
            f"attempt rows {len(attempts)}, lost runs {lost}",
            f"executor RSS peak {executor.rss_peak / 2**20:.0f} MiB (parent alone "
            f"{executor.parent_rss_peak / 2**20:.0f} MiB, up to {executor.children_peak} live descendants); "
            f"job-api RSS peak {sampler.usage['job-api'].rss_peak / 2**20:.0f} MiB",
            f"machine CPU busy {sampler.machine_busy_percent:.0f}% over the window",
            f"minor page faults per run: executor process {executor.own_minor_faults / runs:.0f}, executor "
            f"descendants {(executor.minor_faults - executor.own_minor_faults) / runs:.0f} (counts the "
            "machine's speed does not move, unlike CPU ms)",
        ]
        return result


async def open_platform(platform: Platform) -> PlatformBench:
    """Start the platform side (the caller exits it)."""
    bench = PlatformBench(platform)
    try:
        await bench.__aenter__()
    except BaseException:
        await bench.__aexit__(None, None, None)
        raise
    return bench


__all__ = ["Platform", "PlatformBench", "open_platform", "steps_for"]
