"""Scheduler benchmark: fires/s, fire lateness, queue delay, RSS and database size at 10k / 100k / 1M schedules,
side by side with APScheduler 3 and Celery beat on the same machine. Not a test: nothing is asserted.

Run from the repository root (``make bench-scheduler`` runs the first form)::

    uv run --group bench python services/scheduler/bench/bench_scheduler.py            # 10k, 100k, 1M + peers
    uv run --group bench python services/scheduler/bench/bench_scheduler.py --quick    # 10k + peers
    uv run --group bench python services/scheduler/bench/bench_scheduler.py --sizes 100000 --no-peers

PostgreSQL and RabbitMQ come from ``AUTOMATION_DATABASE_URL`` / ``AUTOMATION_AMQP_URL`` (the local
defaults otherwise); every run creates and drops its own databases and vhosts and talks to 127.0.0.1 only.
Other ``AUTOMATION_*`` variables are passed to the scheduler (e.g. ``AUTOMATION_SCHEDULER_BATCH_SIZE``).
How each system is loaded and measured: ``bench_platform``, ``bench_peers``, ``bench_stats`` and
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import sys
import tempfile
from pathlib import Path

import aio_pika
import asyncpg
import psutil  # type: ignore[import-untyped]
from bench_peers import run_apscheduler, run_celery
from bench_platform import Run, knobs, run_platform
from bench_stats import Row, details, table

from automation_testing.infra import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL

LARGE = 1_000_000
WARMUP = 5.0
LARGE_WARMUP = 60.0
TARGET_RATE, TARGET_P99_MS = 2000.0, 20.0
LARGE_RATE, LARGE_P99_MS = 1000.0, 50.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_scheduler", description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="schedule counts (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="10k only (with the peers)")
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds per run (default: %(default)s)")
    parser.add_argument(
        "--warmup",
        type=float,
        help=f"seconds before the window (default: {WARMUP:g}, and {LARGE_WARMUP:g} from {LARGE:,})",
    )
    parser.add_argument("--drain", type=float, default=5.0, help="seconds after it for late arrivals")
    parser.add_argument(
        "--rate", type=float, help=f"offered fires/s (default: {TARGET_RATE:g}, and {LARGE_RATE:g} from {LARGE:,})"
    )
    parser.add_argument(
        "--cron-share", type=float, default=0.1, help="share of the schedules on cron (default: %(default)s)"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip APScheduler and Celery beat")
    parser.add_argument("--peer-size", type=int, default=10_000, help="APScheduler jobs (default: %(default)s)")
    parser.add_argument(
        "--celery-sizes", default="1000,10000", help="Celery beat entry counts, each at the rate (default: %(default)s)"
    )
    parser.add_argument("--log-dir", type=Path, help="where service logs go (default: a new temporary directory)")
    return parser.parse_args(argv)


def rate_for(size: int, rate: float | None) -> float:
    return rate if rate is not None else (LARGE_RATE if size >= LARGE else TARGET_RATE)


def warmup_for(size: int, warmup: float | None) -> float:
    """Loading 1M rows takes the machine for about a minute, and the fires due meanwhile go out late:
    the window starts once the scheduler has caught up with them."""
    return warmup if warmup is not None else (LARGE_WARMUP if size >= LARGE else WARMUP)


async def versions(database_url: str, amqp_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        pg = str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()
    connection = await aio_pika.connect(amqp_url)
    try:
        props = connection.transport.connection.server_properties if connection.transport else {}
        rabbit = str(props.get("version", "?"))
    finally:
        await connection.close()
    import apscheduler  # type: ignore[import-untyped]
    import celery  # type: ignore[import-untyped]

    return (
        f"PostgreSQL {pg}, RabbitMQ {rabbit}, Python {platform.python_version()},"
        f" APScheduler {apscheduler.__version__}, Celery {celery.__version__}"
    )


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), {memory:.1f} GiB RAM, load average at start {load}"


def verdicts(rows: list[Row]) -> list[str]:
    lines: list[str] = []
    for row in rows:
        m = row.measured
        if row.system != "platform" or m is None:
            continue
        complete = row.implied is not None and m.slots >= row.implied
        if row.size >= LARGE:
            ok = m.lateness.p99 <= LARGE_P99_MS and m.fires_per_s >= 0.99 * LARGE_RATE and complete
            goal = f"{LARGE:,} held, fire lateness p99 <= {LARGE_P99_MS:g} ms at {LARGE_RATE:g} fires/s"
        else:
            ok = m.lateness.p99 <= TARGET_P99_MS and m.fires_per_s >= 0.99 * TARGET_RATE and complete
            goal = f">= {TARGET_RATE:g} fires/s with fire lateness p99 <= {TARGET_P99_MS:g} ms"
        lines.append(
            f"  N={row.size:>9,}: {goal}: {'MET' if ok else 'MISSED'}"
            f" ({m.fires_per_s:.0f} fires/s, p99 {m.lateness.p99:.1f} ms, {m.slots}/{row.implied} slots delivered;"
            f" end to end, with the queue: p99 {m.end_to_end.p99:.1f} ms)"
        )
    return lines


def ratios(rows: list[Row]) -> list[str]:
    ours = {r.size: r.measured for r in rows if r.system == "platform" and r.measured}
    lines: list[str] = []
    for peer in rows:
        mine, theirs = ours.get(peer.size), peer.measured
        if peer.system == "platform" or mine is None or theirs is None:
            continue
        fires = mine.fires_per_s / theirs.fires_per_s if theirs.fires_per_s else float("inf")
        p99 = mine.lateness.p99 / theirs.lateness.p99 if theirs.lateness.p99 else float("inf")
        lines.append(
            f"  vs {peer.system} (N={peer.size:,}): fires/s x{fires:.2f}, fire lateness p99 x{p99:.3f}"
            f" (ours {mine.lateness.p99:.1f} ms, theirs {theirs.lateness.p99:.1f} ms)"
        )
    return lines or ["  (no peer ran at a size the platform ran)"]


async def main(args: argparse.Namespace) -> int:
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-scheduler-"))
    run = Run(
        database_url=os.environ.get("AUTOMATION_DATABASE_URL", DEFAULT_DATABASE_URL),
        amqp_url=os.environ.get("AUTOMATION_AMQP_URL", DEFAULT_AMQP_URL),
        window=args.window,
        warmup=warmup_for(0, args.warmup),
        drain=args.drain,
        log_dir=log_dir,
    )
    default_warmup = f"{WARMUP:g} s ({LARGE_WARMUP:g} s from {LARGE:,})"
    warmup_text = f"{args.warmup:g} s" if args.warmup is not None else default_warmup
    print("Scheduler benchmark", flush=True)
    print(f"  machine: {machine()}")
    print(f"  software: {await versions(run.database_url, run.amqp_url)}")
    print(
        f"  runs: window {run.window:g} s after a {warmup_text} warm-up (+{run.drain:g} s for late arrivals);"
        f" sizes {', '.join(f'{s:,}' for s in sizes)}; cron share {args.cron_share:g};"
        f" rate {args.rate or f'{TARGET_RATE:g}/s ({LARGE_RATE:g}/s from {LARGE:,})'}"
    )
    print(f"  scheduler settings: {knobs()}; logs in {log_dir}\n", flush=True)
    rows: list[Row] = []
    for size in sizes:
        sized = dataclasses.replace(run, warmup=warmup_for(size, args.warmup))
        rows.append(await run_platform(size, rate_for(size, args.rate), args.cron_share, sized))
    if not args.no_peers:
        rows.append(await run_apscheduler(args.peer_size, rate_for(args.peer_size, args.rate), run))
        for entries in (int(s) for s in args.celery_sizes.split(",") if s):
            rows.append(await run_celery(entries, rate_for(entries, args.rate), run))
    print(
        "\nResults (fire lateness = publish - nominal time; queue = arrival on the queue - publish;"
        " end to end = arrival - nominal; claim = decision - nominal; ms p50 / p99 / max)"
    )
    print(table(rows))
    print("\nDetails")
    print(details(rows))
    print("\nTargets")
    print("\n".join(verdicts(rows)))
    print("\nRatios (ours / theirs at the same N; fires/s above 1 and fire lateness below 1 favour the platform)")
    print("\n".join(ratios(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
