"""``make bench-executor``: the executor's throughput, start latency and memory, side by side with Celery 5.

The platform: job-api and the executor run as real processes (fresh database and vhost) and get
``run.requested`` messages for trivial jobs straight on ``automation.commands``; a run is done when its
outcome is in job-api's read model (durable history). Celery 5: a worker with a no-op task, prefork
and threads pools, on its own vhost of the same RabbitMQ, in two configurations: Celery's defaults with
the result backend off (no history; what the throughput target names), and with history (its database
result backend on PostgreSQL, states STARTED and SUCCESS, acknowledged late, a quorum queue; a
task is done when its SUCCESS row is committed). Beside them, the bare minimum (bench_bare_worker): a
hand-written worker that keeps only what the issue requires of every run (a process of its own with
limits and a temporary directory, its claim and outcome in PostgreSQL, the acknowledgement after the
commit), done the simplest way: for shell jobs, the floor those guarantees cost on this machine. Each
system gets the same N requests, once as fast as possible and at fixed rates, from the same publisher.
Nothing is asserted: the figures, the ratios and the targets' verdicts are printed.

    uv run --group bench python services/executor/bench/bench_executor.py [--quick] [--count N] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import celery  # type: ignore[import-untyped]
import psutil  # type: ignore[import-untyped]  # no stubs in the bench group
from bench_bare import BARE_KINDS, BareBench
from bench_celery import CeleryBench
from bench_common import cpu_model
from bench_ours import Platform, open_platform, steps_for
from bench_result import HEADER, Result, Scenario, ratio, table
from bench_steps import SHELL_TRUE, python_noop_step
from bench_worker import PeerWorker

from automation_testing import fresh_database, fresh_vhost

DEFAULT_CONCURRENCY = 8
"""``AUTOMATION_EXECUTOR_CONCURRENCY`` for the run (see docs/benchmarks.md for the sweep)."""
TARGET_P99_MS = 50.0
TARGET_RATE = 500.0
LOW_RATE = 5.0
"""A rate the executor sustains on this machine: start latency without a backlog."""
PACED_SECONDS = 60.0
CELERY_CONFIGURATIONS = {
    "no-op": "acks early, classic queue, result backend off",
    "history": "database result backend on PostgreSQL (psycopg 3), task_track_started, acks late, reject on"
    " worker lost, quorum queue",
}
"""Celery's configurations (see bench_celery_app): its defaults, and with its database result backend."""
OWN_SETTINGS = ("DATABASE_URL", "AMQP_URL", "HTTP_HOST", "HTTP_PORT", "ENV", "LOG_FORMAT", "EXECUTOR_CONCURRENCY")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_executor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 requests per scenario, 120 s limit")
    parser.add_argument("--count", type=int, help="requests per scenario (default 2000; --quick 200)")
    parser.add_argument(
        "--rates",
        default=f"max,{TARGET_RATE:g},{LOW_RATE:g}",
        help="offered rates per second; max = as fast as possible (default %(default)s)",
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="executor concurrency")
    parser.add_argument("--steps", default="auto", help="shell, python, python+shell; comma list (default: auto)")
    parser.add_argument("--celery-prefork", type=int, default=psutil.cpu_count() or 1, help="prefork processes")
    parser.add_argument("--celery-threads", type=int, default=8, help="threads of the threads pool")
    parser.add_argument(
        "--celery",
        default=",".join(CELERY_CONFIGURATIONS),
        help="Celery's configurations, a comma list of no-op and history (default %(default)s)",
    )
    parser.add_argument("--only", choices=["ours", "bare", "celery"], help="run one side only")
    parser.add_argument("--time-limit", type=float, help="seconds per scenario (default 600; --quick 120)")
    parser.add_argument("--log-dir", type=Path, help="service and worker logs (default: a new temporary dir)")
    args = parser.parse_args(argv)
    args.count = args.count or (200 if args.quick else 2000)
    args.time_limit = args.time_limit or (120.0 if args.quick else 600.0)
    if args.count < 1 or args.time_limit <= 0 or args.concurrency < 1:
        parser.error("--count, --time-limit and --concurrency must be positive")
    args.celery = [item.strip() for item in args.celery.split(",") if item.strip()]
    if unknown := set(args.celery) - set(CELERY_CONFIGURATIONS):
        choices = ", ".join(CELERY_CONFIGURATIONS)
        parser.error(f"--celery: unknown configuration {', '.join(sorted(unknown))}; choose from {choices}")
    return args


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """One scenario per offered rate; a paced one offers at most ``PACED_SECONDS`` worth of requests."""
    out = []
    for item in args.rates.split(","):
        value = item.strip()
        if value == "max":
            out.append(Scenario(args.count, None))
        else:
            rate = float(value)
            out.append(Scenario(min(args.count, max(1, math.ceil(rate * PACED_SECONDS))), rate))
    return out


def passthrough_env() -> dict[str, str]:
    """``AUTOMATION_*`` knobs from the caller's environment (not the ones the benchmark sets itself)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("AUTOMATION_") and k.removeprefix("AUTOMATION_") not in OWN_SETTINGS
    }


async def versions(database_url: str, amqp_url: str) -> dict[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        pg = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    connection = await aio_pika.connect(amqp_url)
    try:
        props: dict[str, Any] = dict(connection.transport.connection.server_properties)  # type: ignore[union-attr]
        rabbit = str(props.get("version", "?"))
    finally:
        await connection.close()
    return {"postgres": pg, "rabbitmq": rabbit}


def kinds(args: argparse.Namespace, python_step: dict[str, Any] | None) -> list[str]:
    if args.steps == "auto":
        return ["shell", "python"] if python_step is not None else ["shell"]
    chosen = [k.strip() for k in args.steps.split(",")]
    if python_step is None and any("python" in k for k in chosen):
        raise SystemExit("this executor has no python step type yet; use --steps shell")
    return chosen


def configuration(args: argparse.Namespace, vers: dict[str, str], step_kinds: list[str], python_note: str) -> str:
    mem = psutil.virtual_memory().total / 2**30
    env = passthrough_env()
    lines = [
        "configuration",
        f"  machine      {cpu_model()}, {psutil.cpu_count()} logical CPUs ({psutil.cpu_count(logical=False)} cores),"
        f" {mem:.0f} GiB RAM, {platform.system()} {platform.release()}",
        f"  software     Python {platform.python_version()}, PostgreSQL {vers['postgres']},"
        f" RabbitMQ {vers['rabbitmq']}, Celery {celery.__version__}",
        f"  requests     {args.count} per scenario (a paced one: at most {PACED_SECONDS:g} s worth), offered at"
        f" {args.rates} (runs/s), time limit {args.time_limit:g} s per scenario",
        f"  ours         job-api + executor processes, AUTOMATION_EXECUTOR_CONCURRENCY={args.concurrency}"
        f" (prefetch {args.concurrency}), queue type {env.get('AUTOMATION_AMQP_QUEUE_TYPE', 'quorum')},"
        f" log level {env.get('AUTOMATION_LOG_LEVEL', 'INFO')}; other knobs: "
        + (", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "defaults"),
        f"  jobs         {', '.join(step_kinds)}: {SHELL_TRUE}; {python_note}",
        f"  bare         bench_bare_worker x{args.concurrency} (prefetch {args.concurrency}), per job kind: claim,"
        " a process of its own (session, limits, temporary directory; shell: `true` spawned, python: a fork"
        " calling a no-op), outcome; quorum queue",
        f"  celery       no-op task; prefork x{args.celery_prefork}, threads x{args.celery_threads}; prefetch"
        " multiplier 4; " + "; ".join(f"{name}: {CELERY_CONFIGURATIONS[name]}" for name in args.celery),
    ]
    return "\n".join(lines)


def report(results: list[Result]) -> str:
    out = ["", table([r.row() for r in results], HEADER), ""]
    ours = [r for r in results if not r.peer]
    theirs = [r for r in results if r.peer]
    rows = []
    for mine in ours:
        for other in theirs:
            if other.scenario.label != mine.scenario.label or (other.floor and other.steps != mine.steps):
                continue
            rows.append(
                [
                    f"{mine.system} / {other.system}",
                    mine.scenario.label,
                    ratio(mine.runs_per_second, other.runs_per_second),
                    ratio(mine.start.p50, other.start.p50),
                    ratio(mine.start.p99, other.start.p99),
                    ratio(mine.rss_peak, other.rss_peak),
                    ratio(mine.pss_peak, other.pss_peak),
                ]
            )
    if rows:
        out += [table(rows, ["ratio", "offered", "runs/s", "start p50", "start p99", "RSS peak", "PSS peak"]), ""]
    for r in results:
        out.append(f"{r.system}, {r.scenario.label}:")
        out.append(f"  published {r.published.count} at {r.published.rate:.0f}/s; start latency {r.start.text()}")
        out += [f"  {name}: {lat.text()}" for name, lat in r.extra_latency.items()]
        if r.cpu_ms_per_run:
            out.append("  CPU ms per run: " + ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_ms_per_run.items()))
        out += [f"  {note}" for note in r.notes]
    out += ["", *verdicts(ours, theirs)]
    return "\n".join(out)


def _best(results: list[Result]) -> float:
    """The highest runs/s of the as-fast-as-possible scenarios (nan: none)."""
    return max((r.runs_per_second for r in results if r.scenario.rate is None), default=math.nan)


def verdicts(ours: list[Result], theirs: list[Result]) -> list[str]:
    """The targets' verdicts: throughput against Celery's no-op (without history, as the target says),
    with the ratio to Celery with history beside it; start p99 at the target rate. Then the same
    targets for the bare minimum: whether the issue's guarantees alone leave them within reach here."""
    lines = ["targets"]
    celery = [t for t in theirs if not t.floor]
    best = _best([t for t in celery if not t.durable])
    best_durable = _best([t for t in celery if t.durable])
    for mine in ours:
        lines += _throughput(mine, best, best_durable)
        lines += _start_p99(mine)
    floors = [t for t in theirs if t.floor]
    if floors:
        lines.append("the bare minimum against the same targets (not a peer: the guarantees alone, the simplest way)")
    for floor in floors:
        lines += _throughput(floor, best, best_durable)
        lines += _start_p99(floor)
    return lines


def _throughput(result: Result, best: float, best_durable: float) -> list[str]:
    if result.scenario.rate is not None:
        return []
    lines = []
    if not math.isnan(best):
        ok = result.runs_per_second >= best and not result.timed_out
        lines.append(
            f"  throughput  {result.system}: {result.runs_per_second:.1f} runs/s vs Celery's best no-op {best:.1f}"
            f" -> {'MET' if ok else 'MISSED'}"
        )
    if not math.isnan(best_durable):
        lines.append(
            f"  (reference) {result.system}: {ratio(result.runs_per_second, best_durable)} Celery's best with"
            f" history, {best_durable:.1f} tasks/s"
        )
    return lines


def _start_p99(result: Result) -> list[str]:
    if result.scenario.rate != TARGET_RATE:
        return []
    ok = result.start.p99 <= TARGET_P99_MS and not result.timed_out
    return [
        f"  p99 start   {result.system} at {TARGET_RATE:g}/s: {result.start.p99:.1f} ms (target"
        f" <= {TARGET_P99_MS:g} ms) -> {'MET' if ok else 'MISSED'}"
    ]


async def main_async(args: argparse.Namespace) -> int:
    database_url = os.environ.get("AUTOMATION_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    amqp_url = os.environ.get("AUTOMATION_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-executor-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    python_step, python_note = python_noop_step()
    step_kinds = kinds(args, python_step)
    print(configuration(args, await versions(database_url, amqp_url), step_kinds, python_note), flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  load average {load} (1, 5, 15 min) before the run; other work on the machine shares its CPUs", flush=True)
    print(f"  logs         {log_dir}\n", flush=True)
    plan = scenarios(args)
    results: list[Result] = []
    t0 = time.monotonic()
    if args.only in (None, "ours"):
        platform_cfg = Platform(database_url, amqp_url, args.concurrency, args.time_limit, log_dir, passthrough_env())
        bench = await open_platform(platform_cfg)
        try:
            for kind in step_kinds:
                steps = steps_for(kind, python_step)
                await bench.warm_up(steps)
                for scenario in plan:
                    print(f"ours ({kind}) {scenario.label} ...", flush=True)
                    result = await bench.run(f"ours ({kind})", steps, scenario)
                    result.steps = kind
                    print(f"  {result.runs_per_second:.1f} runs/s, start {result.start.text()}", flush=True)
                    results.append(result)
        finally:
            await bench.__aexit__(None, None, None)
    if args.only in (None, "bare"):
        results += await run_bare(args, plan, database_url, amqp_url, log_dir, step_kinds=step_kinds)
    if args.only in (None, "celery"):
        for name in args.celery:
            results += await run_celery(args, plan, database_url, amqp_url, log_dir, history=name == "history")
    print(report(results), flush=True)
    print(f"\ntotal {time.monotonic() - t0:.0f} s; logs in {log_dir}", flush=True)
    return 0


async def run_celery(
    args: argparse.Namespace, plan: list[Scenario], database_url: str, amqp_url: str, log_dir: Path, *, history: bool
) -> list[Result]:
    """Both pools of one Celery configuration, in a vhost (and with history, a database) of its own."""
    results = []
    async with contextlib.AsyncExitStack() as stack:
        celery_url = await stack.enter_async_context(fresh_vhost(amqp_url, prefix="executor-bench-celery"))
        backend = None
        if history:
            backend = await stack.enter_async_context(fresh_database(database_url, prefix="executor_bench_celery"))
        for pool, concurrency in (("prefork", args.celery_prefork), ("threads", args.celery_threads)):
            async with CeleryBench(celery_url, pool, concurrency, args.time_limit, log_dir, history=backend) as worker:
                results += await run_plan(worker, plan)
    return results


async def run_bare(
    args: argparse.Namespace,
    plan: list[Scenario],
    database_url: str,
    amqp_url: str,
    log_dir: Path,
    *,
    step_kinds: list[str],
) -> list[Result]:
    """The bare minimum for each single job kind ours runs (shell, python), in a vhost and a database of
    its own, its directories where ours has them."""
    results = []
    workdirs = os.environ.get("AUTOMATION_EXECUTOR_WORKDIR_ROOT")
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(fresh_vhost(amqp_url, prefix="executor-bench-bare"))
        database = await stack.enter_async_context(fresh_database(database_url, prefix="executor_bench_bare"))
        for kind in (k for k in step_kinds if k in BARE_KINDS):
            bare = BareBench(url, database, args.concurrency, args.time_limit, log_dir, steps=kind, workdirs=workdirs)
            async with bare as worker:
                results += await run_plan(worker, plan)
    return results


async def run_plan(worker: PeerWorker, plan: list[Scenario]) -> list[Result]:
    """Each scenario of the plan on one peer's worker, one after the other, each announced as it goes."""
    results = []
    for scenario in plan:
        print(f"{worker.system} {scenario.label} ...", flush=True)
        result = await worker.run(scenario)
        print(f"  {result.runs_per_second:.1f} runs/s, start {result.start.text()}", flush=True)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
