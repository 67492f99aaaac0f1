"""Soak the running suite (``make dev``) with scheduled runs while something breaks, then check that
every slot of every schedule was fired once, and each fire ran once.

    uv run --frozen python tests-soak/schedules.py --outage broker     # stop RabbitMQ's app for a while
    uv run --frozen python tests-soak/schedules.py --outage database   # stop PostgreSQL for a while
    uv run --frozen python tests-soak/schedules.py --outage replicas   # SIGKILL / SIGTERM extra executor replicas
    uv run --frozen python tests-soak/schedules.py --outage replicas --replicas scheduler   # ... extra schedulers

It creates an account and ``--jobs`` jobs on ``@every 1s`` with ``misfire_policy: run_all`` (each a
``true`` step), lets them fire for ``--minutes``, breaks something meanwhile, disables them, waits for
their runs to end, and checks, per job, from the scheduler's ``fires`` and job-api's read model:

- every slot of the job's grid from its first fire to its last has exactly one recorded outcome, and
  it is ``fired`` (a ``run_all`` job catches up after an outage shorter than its cap);
- every fired slot has exactly one execution in job-api (trigger ``schedule``, its ``scheduled_for``),
  and it ``succeeded``;
- no run's step ran twice within one attempt (the step appends ``<execution> <attempt>`` to a file).

It prints how late the runs started (the executor's start of the run minus its slot) and exits 1 when a check fails. The
outages are those of ``soak.py``, which it shares; bounded: ``--jobs`` runs a second, to the suite on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from soak import (
    API,
    DATABASE_URL,
    REPLICA_PORTS,
    TERMINAL,
    Replicas,
    create_job,
    new_account,
    outage,
    outage_arguments,
    verdict,
)

SLOT = timedelta(seconds=1)
SCHEDULER_PORTS = (8022, 8023)
"""Two more scheduler replicas, beside the suite's, for ``--outage replicas --replicas scheduler``."""


def job_definition(record: Path) -> dict[str, Any]:
    mark = f'echo "$AUTOMATION_EXECUTION_ID $AUTOMATION_ATTEMPT" >> {record}'
    return {
        "name": f"soak-every-{uuid.uuid4().hex[:8]}",
        "schedule": "@every 1s",
        "misfire_policy": "run_all",
        "retries": 5,
        "retry_backoff": {"base_seconds": 0.2, "max_seconds": 1},
        "steps": [{"name": "t", "type": "shell", "config": {"command": ["bash", "-c", mark]}}],
    }


async def wait_ended(conn: asyncpg.Connection, jobs: list[str], timeout: float, *, expected: int = 0) -> dict[str, int]:
    """Until the jobs' executions (at least ``expected`` of them) have all ended, or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await conn.fetch(
            "SELECT status, count(*) FROM job_api.executions WHERE job_id = ANY($1::uuid[]) GROUP BY 1", jobs
        )
        counts = {r["status"]: r["count"] for r in rows}
        ended = sum(counts.values()) >= expected and all(s in TERMINAL for s in counts)
        if ended or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(2)


def setup(
    parser: argparse.ArgumentParser, prefix: str, *, more: dict[str, tuple[int, ...]] | None = None
) -> tuple[argparse.Namespace, Path, Path, Replicas]:
    """What the soaks of scheduled and event-triggered runs share: ``--replicas executor|scheduler`` (and
    the services of ``more``, with their ports) and the outage options, parsed; a working directory, the
    steps' record in it, and the replicas."""
    ports_of = {"executor": REPLICA_PORTS, "scheduler": SCHEDULER_PORTS} | (more or {})
    parser.add_argument("--replicas", choices=list(ports_of), default="executor", help="what --outage replicas stops")
    args = outage_arguments(parser, kills=6, outage="database")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    record = work / "steps"
    record.touch(mode=0o666)
    return args, work, record, Replicas(work, service=args.replicas, ports=ports_of[args.replicas])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else float("nan")


async def check(conn: asyncpg.Connection, jobs: list[str], record: Path) -> list[str]:
    """What went wrong, one line each; prints the figures."""
    fires = await conn.fetch(
        """SELECT job_id::text, nominal_time, outcome, execution_id::text, fired_at FROM scheduler.fires
           WHERE job_id = ANY($1::uuid[]) AND trigger = 'schedule' ORDER BY job_id, nominal_time""",
        jobs,
    )
    executions = await conn.fetch(
        """SELECT id::text, job_id::text, scheduled_for, started_at, status FROM job_api.executions
           WHERE job_id = ANY($1::uuid[]) AND trigger = 'schedule'""",
        jobs,
    )
    problems: list[str] = []
    by_job: dict[str, list[Any]] = collections.defaultdict(list)
    for row in fires:
        by_job[row["job_id"]].append(row)
    gaps, outcomes = 0, collections.Counter(r["outcome"] for r in fires)
    for job, rows in by_job.items():
        first, last = rows[0]["nominal_time"], rows[-1]["nominal_time"]
        want = int((last - first) / SLOT) + 1
        if len(rows) != want:
            gaps += want - len(rows)
            problems.append(f"job {job}: {want - len(rows)} slots between {first:%X} and {last:%X} have no outcome")
    if missing := [j for j in jobs if j not in by_job]:
        problems.append(f"{len(missing)} jobs never fired")
    not_fired = [(r["job_id"], f"{r['nominal_time']:%X}", r["outcome"]) for r in fires if r["outcome"] != "fired"]
    if not_fired:
        problems.append(f"{len(not_fired)} slots not fired: {not_fired[:5]}")
    per_slot = collections.Counter((r["job_id"], r["scheduled_for"]) for r in executions)
    fired = {(r["job_id"], r["nominal_time"]): r["execution_id"] for r in fires if r["outcome"] == "fired"}
    without = [k for k in fired if per_slot[k] == 0]
    doubled = [k for k, n in per_slot.items() if n > 1]
    strays = [k for k in per_slot if k not in fired]
    statuses = collections.Counter(r["status"] for r in executions)
    marks = collections.Counter(
        tuple(line.split()) for line in (await asyncio.to_thread(record.read_text)).splitlines() if line.strip()
    )
    reran = [k for k, n in marks.items() if n > 1]
    late = [
        (r["started_at"] - r["scheduled_for"]).total_seconds() * 1000
        for r in executions
        if r["started_at"] is not None and r["scheduled_for"] is not None
    ]
    print(f"slots: {len(fires)} over {len(by_job)} jobs; outcomes {dict(outcomes)}; slots with no outcome: {gaps}")
    print(
        f"start lateness ms (the run's start - its slot): p50 {percentile(late, 0.5):.1f},"
        f" p99 {percentile(late, 0.99):.1f},"
        f" max {max(late, default=float('nan')):.1f}"
    )
    print(f"executions: {len(executions)}; statuses {dict(statuses)}")
    print(f"fired slots without an execution: {len(without)}; slots with two or more: {len(doubled)}")
    print(f"step runs recorded: {len(marks)}; run twice within one attempt: {len(reran)}")
    if without:
        problems.append(f"{len(without)} fired slots have no execution in job-api: {without[:3]}")
    if doubled:
        problems.append(f"{len(doubled)} slots have more than one execution: {doubled[:3]}")
    if strays:
        problems.append(f"{len(strays)} executions stand for no fired slot: {strays[:3]}")
    if other := {s: n for s, n in statuses.items() if s != "succeeded"}:
        problems.append(f"executions that did not succeed: {other}")
    if reran:
        problems.append(f"a step ran twice within one attempt: {reran[:3]}")
    return problems


async def disable(client: httpx.AsyncClient, headers: dict[str, str], definitions: dict[str, dict[str, Any]]) -> None:
    """Turn every job's schedule off (``PUT`` with ``enabled: false``), retried until job-api answers."""
    for job, definition in definitions.items():
        while True:
            try:
                resp = await client.put(f"{API}/jobs/{job}", json=definition | {"enabled": False}, headers=headers)
            except httpx.HTTPError:
                resp = None
            if resp is not None and resp.status_code == 200:
                break
            await asyncio.sleep(1)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs on @every 1s")
    parser.add_argument("--minutes", type=float, default=1.5, help="how long they fire")
    args, work, record, replicas = setup(parser, "soak-schedules-")
    print(f"soak: outage {args.outage}, {args.jobs} jobs @every 1s for {args.minutes:g} min; files in {work}")
    async with httpx.AsyncClient(timeout=30) as client:
        headers = await new_account(client)
        definitions: dict[str, dict[str, Any]] = {}
        for _ in range(args.jobs):
            definition = job_definition(record)
            definitions[await create_job(client, headers, definition)] = definition
        jobs = list(definitions)
        if args.outage == "replicas":
            for port in replicas.ports:
                await replicas.start(port)
        try:
            started = time.monotonic()
            _, done = await asyncio.gather(
                asyncio.sleep(args.minutes * 60), outage(args.outage, replicas, args.seconds, args.kills)
            )
            for line in done:
                print(line)
            await disable(client, headers, definitions)
            await asyncio.sleep(5)  # the scheduler learns of the change; fires in flight land
            conn = await asyncpg.connect(DATABASE_URL)
            try:
                counts = await wait_ended(conn, jobs, timeout=300)
                print(f"all ended after {time.monotonic() - started:.1f}s: {counts}")
                problems = await check(conn, jobs, record)
            finally:
                await conn.close()
        finally:
            await replicas.stop_all()
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
