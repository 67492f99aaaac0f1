"""One size of the platform's scheduler under a steady fire rate: real process, real outbox relay and broker.

For each size: a fresh database and vhost; ``python -m automation_scheduler serve`` as its own process
(migrating on start, default settings unless ``AUTOMATION_*`` knobs are set in the environment); two
template jobs through ``job.created``; the bulk clone (``bench_load``); then, with ``bench_consumer``
on ``executor.runs`` (nothing else consumes it in this vhost), a warm-up and a measured window. During the
window the scheduler's RSS is sampled every 0.5 s, and CPU time is read for the scheduler, the
PostgreSQL backends of the bench database, RabbitMQ and the whole machine. The database size is
``pg_total_relation_size`` summed over the tables of schema ``scheduler`` (heap, indexes, TOAST) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
from bench_load import Mix, load, verify_sample
from bench_metrics import LoopFigures, scrape
from bench_stats import Row, measure

from automation_messaging import CLOUDEVENTS_JSON
from automation_messaging.topology import EVENTS, EXECUTOR_RUNS
from automation_scheduler.db.repository import WAKE_CHANNEL
from automation_scheduler.testing import Jobs
from automation_suite import ServiceProcess, SuiteConfig
from automation_testing import fresh_database, fresh_vhost, wait_until

HERE = Path(__file__).resolve().parent
LEAD_SECONDS = 10.0
"""Each clone first fires at least this long after it is inserted (see ``bench_load.load``)."""
BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
OWN_SETTINGS = ("DATABASE_URL", "AMQP_URL", "HTTP_HOST", "HTTP_PORT", "ENV", "LOG_FORMAT")


@dataclass(frozen=True, slots=True)
class Run:
    """Where and how long to run."""

    database_url: str
    amqp_url: str
    window: float
    warmup: float
    drain: float
    log_dir: Path


@dataclass
class Usage:
    """Resource samples taken during the window."""

    rss_peak: int = 0
    cpu: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scheduler_env(database_url: str, amqp_url: str) -> dict[str, str]:
    """The scheduler's environment: the caller's ``AUTOMATION_*`` knobs, this run's infrastructure."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("AUTOMATION_") and k.removeprefix("AUTOMATION_") not in OWN_SETTINGS
    }
    env.setdefault("AUTOMATION_JWT_SECRET", "bench-" + "x" * 32)
    env.setdefault("AUTOMATION_LOG_LEVEL", "INFO")
    env |= {
        "AUTOMATION_ENV": "development",
        "AUTOMATION_DATABASE_URL": database_url,
        "AUTOMATION_AMQP_URL": amqp_url,
        "AUTOMATION_LOG_FORMAT": "json",
    }
    return env


def knobs() -> str:
    """The scheduler settings this run changes from their defaults."""
    changed = sorted(
        f"{k}={v}"
        for k, v in os.environ.items()
        if k.startswith("AUTOMATION_") and k.removeprefix("AUTOMATION_") not in OWN_SETTINGS
    )
    return ", ".join(changed) or "defaults"


async def start_scheduler(database_url: str, amqp_url: str, log_dir: Path) -> tuple[ServiceProcess, str]:
    port = free_port()
    config = SuiteConfig(
        env=scheduler_env(database_url, amqp_url), ports={"scheduler": port}, log_dir=log_dir, echo=False
    )
    process = ServiceProcess("scheduler", config)
    process.start()
    url = config.url("scheduler")
    async with httpx.AsyncClient(timeout=2) as http:

        async def ready() -> bool:
            if process.exit_code is not None:
                raise RuntimeError(f"the scheduler exited with {process.exit_code}; see {log_dir}/scheduler.log")
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get(f"{url}/readyz")).status_code == 200
            return False

        await wait_until(ready, timeout=60, interval=0.2, what="the scheduler ready")
    return process, url


async def stop_scheduler(process: ServiceProcess) -> None:
    process.signal(signal.SIGTERM)
    if not await asyncio.to_thread(process.wait, 20):
        process.signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 5)
    process.close()


async def make_templates(amqp_url: str, database_url: str, mix: Mix) -> tuple[uuid.UUID, uuid.UUID]:
    """One paused job per kind through ``job.created``, as job-api publishes it; their rows once written."""
    jobs = Jobs()
    every, cron = uuid.uuid4(), uuid.uuid4()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS, ensure=False)
        for job_id, expression in ((every, mix.every_expression), (cron, mix.cron_expression(0))):
            event = jobs.changed(job_id, schedule=expression, enabled=False)
            message = aio_pika.Message(
                event.to_json_bytes(), content_type=CLOUDEVENTS_JSON, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            await exchange.publish(message, routing_key=event.type)
    finally:
        await connection.close()

    async def written() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            count = await conn.fetchval(
                "SELECT count(*) FROM scheduler.schedules WHERE job_id = ANY($1)", [every, cron]
            )
        finally:
            await conn.close()
        return bool(count == 2)

    await wait_until(written, timeout=30, what="the template schedules written by the consumer")
    return every, cron


async def start_consumer(amqp_url: str, queue: str, mode: str, until: float, out: Path) -> asyncio.subprocess.Process:
    """``bench_consumer`` as its own process; returns once it is consuming."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "bench_consumer.py"),
        "--amqp",
        amqp_url,
        "--queue",
        queue,
        "--mode",
        mode,
        "--until",
        repr(until),
        "--out",
        str(out),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    if b"consuming" not in line:
        raise RuntimeError(f"the consumer did not start: {line!r}")
    return process


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _named(name: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == name]


async def sample_usage(pid: int, backends: list[int], w0: float, w1: float, consumer: int | None = None) -> Usage:
    """RSS of the scheduler every 0.5 s and CPU shares (% of one core) over ``[w0, w1)``.

    ``other processes`` is the machine's busy time minus the groups measured: other work on a shared box.
    """
    scheduler = psutil.Process(pid)
    groups = {
        "scheduler": [scheduler],
        "postgres (bench db)": [psutil.Process(b) for b in backends if psutil.pid_exists(b)],
        "rabbitmq": _named("beam.smp"),
        "consumer": [psutil.Process(consumer)] if consumer else [],
    }
    usage = Usage()
    await asyncio.sleep(max(0.0, w0 - time.time()))
    before = {name: _cpu_seconds(procs) for name, procs in groups.items()}
    machine_before = psutil.cpu_times()
    while time.time() < w1:
        with contextlib.suppress(psutil.Error):
            usage.rss_peak = max(usage.rss_peak, scheduler.memory_info().rss)
        await asyncio.sleep(0.5)
    span = max(1e-9, time.time() - w0)
    for name, procs in groups.items():
        usage.cpu[name] = (_cpu_seconds(procs) - before[name]) / span * 100
    machine_after = psutil.cpu_times()
    busy = sum(machine_after) - sum(machine_before) - (machine_after.idle - machine_before.idle)
    usage.cpu["machine"] = busy / span * 100
    usage.cpu["other processes"] = usage.cpu["machine"] - sum(usage.cpu[name] for name in groups)
    return usage


async def database_size(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'scheduler' AND c.relkind = 'r'"
    )
    return {str(r["relname"]): int(r["bytes"]) for r in rows}


async def run_platform(size: int, rate: float, cron_share: float, run: Run) -> Row:
    """Load ``size`` schedules offering ``rate`` fires/s and measure one window."""
    mix = Mix.plan(size, rate, cron_share)
    schedule = f"{mix.every_count:,} {mix.every_expression} + {mix.cron_count:,} cron/{mix.cron_period}s"
    row = Row("platform", size, schedule, mix.rate, None)
    print(f"  platform N={size:,}: {schedule}, offering {mix.rate:.0f} fires/s", flush=True)
    async with (
        fresh_database(run.database_url, prefix="automation_bench") as database_url,
        fresh_vhost(run.amqp_url, prefix="automation-bench") as amqp_url,
    ):
        log_dir = run.log_dir / f"platform-{size}"
        process, url = await start_scheduler(database_url, amqp_url, log_dir)
        try:
            every, cron = await make_templates(amqp_url, database_url, mix)
            conn = await asyncpg.connect(database_url)
            try:
                first_fire = time.time() + LEAD_SECONDS
                first_at = datetime.fromtimestamp(first_fire, UTC)
                load_seconds = await load(
                    conn,
                    mix,
                    every_template=every,
                    cron_template=cron,
                    first_fire=first_at,
                    lead=LEAD_SECONDS,
                    wake_channel=WAKE_CHANNEL,
                )
                steady = max(first_fire, time.time() + LEAD_SECONDS)
                checked = await verify_sample(conn, first_at, datetime.fromtimestamp(steady, UTC))
                w0 = steady + run.warmup
                w1 = w0 + run.window
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "platform.json"
                    consumer = await start_consumer(amqp_url, EXECUTOR_RUNS, "platform", w1 + run.drain, out)
                    backends = [int(r["pid"]) for r in await conn.fetch(BACKENDS)]
                    pid = process.process.pid if process.process else 0
                    sampling = asyncio.create_task(sample_usage(pid, backends, w0, w1, consumer.pid))
                    await asyncio.sleep(max(0.0, w0 - time.time()))
                    before = await scrape(url)
                    usage = await sampling
                    loop = LoopFigures.between(before, await scrape(url))
                    await consumer.wait()
                    records: dict[str, Any] = json.loads(out.read_text())
                backlog = await conn.fetchval(
                    "SELECT count(*) FROM scheduler.schedules WHERE state = 'active' AND next_fire_at < now()"
                )
                sizes = await database_size(conn)
            finally:
                await conn.close()
        finally:
            await stop_scheduler(process)
    implied = mix.slots_in(datetime.fromtimestamp(w0, UTC), datetime.fromtimestamp(w1, UTC), first_at)
    row.measured = measure(records, w0, w1)
    row.implied = implied
    row.rss_mib = usage.rss_peak / 2**20
    row.db_mib = sum(sizes.values()) / 2**20
    row.cpu = "CPU% " + ", ".join(f"{k} {v:.0f}" for k, v in usage.cpu.items())
    row.notes.append(loop.text(run.window, usage.cpu["scheduler"]))
    table_sizes = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sorted(sizes.items()))
    row.notes += [
        f"loaded in {load_seconds:.1f} s ({checked} rows checked against automation_schedule);"
        f" window from {w0 - first_fire:.1f} s after the first slot",
        f"due backlog after drain {backlog}",
        f"DB MiB by table: {table_sizes}",
        f"cron burst {mix.cron_burst:.0f} fires per whole second",
        f"scheduler log: {log_dir / 'scheduler.log'} ({url})",
    ]
    return row
