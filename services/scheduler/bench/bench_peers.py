"""The peers, run one after another on the same machine, each measured like the platform.

- **APScheduler 3**: ``peer_apscheduler`` in its own process; the fire is its job coroutine starting.
- **Celery beat**: ``celery beat`` (``peer_celery``) in its own process, publishing to its own vhost on
  the same RabbitMQ; ``bench_consumer`` counts the task messages on queue ``celery`` (no worker).

Both get N interval schedules with period N / rate and first fires spread evenly, as the platform's
``@every`` schedules are. Their resource figures are the RSS peak and CPU of that one process.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_platform import Run, Usage, sample_usage, start_consumer
from bench_stats import Row, measure

from automation_testing import fresh_vhost

HERE = Path(__file__).resolve().parent
SETUP_SECONDS_PER_JOB = 1 / 5_000
"""A pessimistic start-up cost per job (adding jobs, building entries) to place the first fire."""
START_MARGIN_SECONDS = 4.0


def grid_count(origin: float, period: float, start: float, end: float) -> int:
    """Points ``origin + k * period`` in ``[start, end)``."""
    return max(0, math.ceil((end - origin) / period) - math.ceil((start - origin) / period))


def cpu_text(usage: Usage, name: str) -> str:
    shares = {(name if k == "scheduler" else k): v for k, v in usage.cpu.items() if not k.startswith("postgres")}
    return "CPU% " + ", ".join(f"{k} {v:.0f}" for k, v in shares.items())


def _window(jobs: int, run: Run) -> tuple[float, float, float]:
    first = time.time() + START_MARGIN_SECONDS + jobs * SETUP_SECONDS_PER_JOB
    w0 = first + run.warmup
    return first, w0, w0 + run.window


async def run_apscheduler(jobs: int, rate: float, run: Run) -> Row:
    """APScheduler 3's ``AsyncIOScheduler`` with ``jobs`` interval jobs offering ``rate`` fires/s."""
    period = jobs / rate
    row = Row("APScheduler 3", jobs, f"{jobs:,} interval {period:g}s", jobs / period, None)
    print(f"  APScheduler 3 N={jobs:,}: interval {period:g}s", flush=True)
    first, w0, w1 = _window(jobs, run)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "apscheduler.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "peer_apscheduler.py"),
            *("--jobs", str(jobs), "--period", repr(period), "--first", repr(first)),
            *("--until", repr(w1 + run.drain), "--out", str(out)),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readline(), timeout=120)
        late_start = time.time() - first
        usage = await sample_usage(process.pid, [], w0, w1)
        await process.wait()
        records: dict[str, Any] = json.loads(out.read_text())
    row.measured = measure(records, w0, w1)
    step = period / jobs
    row.implied = sum(grid_count(first + i * step, period, w0, w1) for i in range(jobs))
    row.rss_mib = usage.rss_peak / 2**20
    row.cpu = cpu_text(usage, "apscheduler")
    row.notes += [
        "in-process, memory job store: no persistence, no broker (the fire is the job coroutine starting)",
        f"missed {records['missed']}, skipped (max instances) {records['max_instances']}",
    ]
    if late_start > 0:
        row.notes.append(f"started {late_start:.1f} s after the first due time")
    return row


async def run_celery(entries: int, rate: float, run: Run) -> Row:
    """``celery beat`` with ``entries`` interval entries offering ``rate`` sends/s, counted on the broker."""
    period = entries / rate
    row = Row("Celery beat", entries, f"{entries:,} interval {period:g}s", entries / period, None)
    print(f"  Celery beat N={entries:,}: interval {period:g}s", flush=True)
    log_dir = run.log_dir / f"celery-{entries}"
    log_dir.mkdir(parents=True, exist_ok=True)
    async with fresh_vhost(run.amqp_url, prefix="automation-bench-celery") as amqp_url:
        first, w0, w1 = _window(entries, run)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "celery.json"
            consumer = await start_consumer(amqp_url, "celery", "celery", w1 + run.drain, out)
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
                "BENCH_BROKER": amqp_url,
                "BENCH_ENTRIES": str(entries),
                "BENCH_PERIOD": repr(period),
                "BENCH_FIRST": repr(first),
            }
            with (log_dir / "beat.log").open("wb") as log:
                beat = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *("-m", "celery", "-A", "peer_celery", "beat", "-S", "peer_celery:BenchScheduler"),
                    *("--loglevel", "WARNING", "--pidfile", ""),
                    cwd=tmp,
                    env=env,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )
                usage = await sample_usage(beat.pid, [], w0, w1, consumer.pid)
                await consumer.wait()
                beat.terminate()
                try:
                    await asyncio.wait_for(beat.wait(), timeout=10)
                except TimeoutError:
                    beat.kill()  # beat may be stuck catching up; its figures are in already
                    await beat.wait()
            records: dict[str, Any] = json.loads(out.read_text())
    row.measured = measure(records, w0, w1)
    row.rss_mib = usage.rss_peak / 2**20
    row.cpu = cpu_text(usage, "celery beat")
    row.notes += [
        "in-memory celery.beat.Scheduler; persistent messages without publisher confirms (Celery's default)",
        f"beat log: {log_dir / 'beat.log'}",
    ]
    return row
