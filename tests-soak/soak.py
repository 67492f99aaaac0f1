"""Soak the running suite (``make dev``) with runs while something breaks, then check that nothing was
lost or doubled.

    uv run --frozen python tests-soak/soak.py --outage replicas   # SIGKILL / SIGTERM extra executor replicas
    uv run --frozen python tests-soak/soak.py --outage broker     # stop RabbitMQ's app for a while
    uv run --frozen python tests-soak/soak.py --outage database   # stop PostgreSQL for a while

It creates an account and three jobs (two shell steps with a random sleep, a python no-op, ``true``),
starts two more executor replicas beside the suite's own, asks for ``--runs`` manual runs over job-api
(``Idempotency-Key`` on each, retried on 503 and connection errors) while the outage happens, waits
for every run to end, and checks, from the databases and the steps' own record:

- every run asked for has exactly one execution, and it ended (none left ``queued`` or ``running``);
- no step ran twice within one attempt (each shell step appends ``<execution> <step> <attempt>`` to a
  file; an attempt lost to a killed replica is retried as the next attempt, which is allowed);
- job-api's read model shows the executor's last attempt, and every execution's log ends with its
  attempt's summary line;
- nothing was dead-lettered during the soak.

The outages act on this machine's services: ``rabbitmqctl stop_app`` / ``start_app`` and
``pg_ctlcluster <version> main stop`` / ``start`` (Debian's PostgreSQL), so it needs the rights to run
them. It prints its figures and exits 1 when a check fails. Bounded: ``--runs`` requests at
``--rate`` per second, to the suite on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from automation_suite.supervisor import dev_environment

ROOT = Path(__file__).resolve().parent.parent
API = "http://127.0.0.1:8000/api/v1"
DATABASE_URL = os.environ.get("AUTOMATION_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPLICA_PORTS = (8012, 8013)
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def postgres_cluster(action: str) -> list[str]:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    return [
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        versions[-1],
        "main",
        action,
        *(["-m", "fast"] * (action == "stop")),
    ]


class Replicas:
    """Executor replicas beside the suite's, with the suite's environment."""

    def __init__(self, log_dir: Path) -> None:
        self.env = dev_environment(ROOT / ".dev") | {"AUTOMATION_LOG_FORMAT": "json"}
        self.log_dir = log_dir
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"executor-{port}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "automation_executor", "serve"],
                env=os.environ | self.env | {"AUTOMATION_HTTP_PORT": str(port), "AUTOMATION_HTTP_HOST": "127.0.0.1"},
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=ROOT,
            )

    async def start(self, port: int) -> None:
        self.processes[port] = await asyncio.to_thread(self._spawn, port)
        async with httpx.AsyncClient() as client:
            for _ in range(150):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise SystemExit(f"executor replica on port {port} did not get ready; see {self.log_dir}")

    async def stop(self, port: int, sig: signal.Signals) -> None:
        process = self.processes.pop(port)
        if sig == signal.SIGKILL:
            os.killpg(process.pid, sig)  # the replica and its fork servers, as a node failure would
        else:
            process.send_signal(sig)
        await asyncio.to_thread(process.wait, 60)

    async def stop_all(self) -> None:
        for port in list(self.processes):
            await self.stop(port, signal.SIGTERM)


async def outage(kind: str, replicas: Replicas, seconds: float, kills: int) -> list[str]:
    """Break something while the runs flow; what was done, one line each."""
    done: list[str] = []
    await asyncio.sleep(2)
    if kind == "replicas":
        for k in range(kills):
            port = secrets.choice(REPLICA_PORTS)
            sig = signal.SIGTERM if k % 3 == 2 else signal.SIGKILL
            done.append(f"{time.strftime('%X')} {sig.name} replica :{port}")
            await replicas.stop(port, sig)
            await asyncio.sleep(0.5 + secrets.randbelow(16) / 10)
            await replicas.start(port)
            await asyncio.sleep(1 + secrets.randbelow(21) / 10)
    elif kind == "broker":
        done.append(f"{time.strftime('%X')} rabbitmqctl stop_app for {seconds:g}s")
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "stop_app"], capture_output=True, check=True)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "start_app"], capture_output=True, check=True)
    else:
        done.append(f"{time.strftime('%X')} PostgreSQL stopped for {seconds:g}s")
        await asyncio.to_thread(subprocess.run, postgres_cluster("stop"), capture_output=True, check=True)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(subprocess.run, postgres_cluster("start"), capture_output=True, check=True)
    return done


def job_definitions(record: Path) -> list[dict[str, Any]]:
    def mark(step: str) -> str:
        return f'echo "$AUTOMATION_EXECUTION_ID {step} $AUTOMATION_ATTEMPT" >> {record}'

    sleep = "sleep $((RANDOM % 2)).$((RANDOM % 10))"
    return [
        {
            "name": f"soak-shell-{uuid.uuid4().hex[:6]}",
            "retries": 5,
            "steps": [
                {"name": "a", "type": "shell", "config": {"command": ["bash", "-c", f"{mark('a')}; {sleep}"]}},
                {"name": "b", "type": "shell", "config": {"command": ["bash", "-c", mark("b")]}},
            ],
        },
        {
            "name": f"soak-python-{uuid.uuid4().hex[:6]}",
            "retries": 5,
            "steps": [
                {"name": "p", "type": "python", "config": {"handler": "automation_executor.examples.handlers:noop"}}
            ],
        },
        {
            "name": f"soak-true-{uuid.uuid4().hex[:6]}",
            "retries": 5,
            "steps": [{"name": "t", "type": "shell", "config": {"command": ["true"]}}],
        },
    ]


async def request_runs(
    client: httpx.AsyncClient, headers: dict[str, str], jobs: list[str], runs: int, rate: float
) -> tuple[dict[str, str], int]:
    """Ask for the runs, each with its own Idempotency-Key and retried until accepted; key → execution id."""
    executions: dict[str, str] = {}
    retried = 0
    for _ in range(runs):
        key, job = str(uuid.uuid4()), secrets.choice(jobs)
        while True:
            try:
                resp = await client.post(
                    f"{API}/jobs/{job}/execute", json={}, headers=headers | {"Idempotency-Key": key}
                )
            except httpx.HTTPError:
                resp = None
            if resp is not None and resp.status_code == 202:
                executions[key] = resp.json()["execution_id"]
                break
            if resp is not None and resp.status_code != 503:
                raise SystemExit(f"job-api refused a run: {resp.status_code} {resp.text}")
            retried += 1
            await asyncio.sleep(1)
        await asyncio.sleep(1 / rate)
    return executions, retried


async def wait_ended(ids: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(DATABASE_URL)
            try:
                rows = await conn.fetch(
                    "SELECT status, count(*) FROM job_api.executions WHERE id = ANY($1::uuid[]) GROUP BY 1", ids
                )
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError):
            rows = []
        counts = {r["status"]: r["count"] for r in rows}
        if sum(n for s, n in counts.items() if s in TERMINAL) == len(ids) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(2)


async def check(ids: list[str], record: Path, since: float) -> list[str]:
    """What went wrong, one line each (empty: every check passed); prints the figures."""
    problems: list[str] = []
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        read_model = await conn.fetch(
            "SELECT id::text, status, attempt FROM job_api.executions WHERE id = ANY($1::uuid[])", ids
        )
        attempts = await conn.fetch(
            """SELECT execution_id::text, attempt, status, run_count FROM executor.attempts
               WHERE execution_id = ANY($1::uuid[])""",
            ids,
        )
        summaries = await conn.fetch(
            """SELECT DISTINCT l.execution_id::text
               FROM job_api.execution_logs l
               JOIN job_api.executions x ON x.id = l.execution_id AND x.attempt = l.attempt,
               jsonb_array_elements(l.entries) e
               WHERE l.execution_id = ANY($1::uuid[]) AND e->>'stream' = 'system'
                 AND e->>'text' ~ '^attempt [0-9]+ (succeeded|failed|timed out|cancelled)'""",
            ids,
        )
        dead = await conn.fetch(
            """SELECT original_queue, left(reason, 200) AS reason FROM job_api.dead_letters
               WHERE received_at >= to_timestamp($1)""",
            since,
        )
    finally:
        await conn.close()
    statuses = collections.Counter(r["status"] for r in read_model)
    by_execution: dict[str, list[Any]] = collections.defaultdict(list)
    for row in attempts:
        by_execution[row["execution_id"]].append(row)
    histories = collections.Counter(
        tuple(a["status"] for a in sorted(v, key=lambda a: a["attempt"])) for v in by_execution.values()
    )
    lines = (await asyncio.to_thread(record.read_text)).splitlines()
    marks = collections.Counter(tuple(line.split()) for line in lines if line.strip())
    doubled = {k: n for k, n in marks.items() if n > 1}
    mismatched = [
        r["id"] for r in read_model if r["attempt"] != max((a["attempt"] for a in by_execution[r["id"]]), default=0)
    ]
    print(f"executions: {len(read_model)} of {len(ids)} asked for; statuses {dict(statuses)}")
    print(f"attempt histories: {dict(histories)}")
    print(f"reruns of a handed-back attempt (run_count > 1): {sum(a['run_count'] > 1 for a in attempts)}")
    print(f"shell steps recorded: {len(marks)}; run twice within one attempt: {len(doubled)}")
    print(f"logs ending with their attempt's summary: {len(summaries)} of {len(read_model)}")
    print(f"dead letters during the soak: {len(dead)}")
    if len(read_model) != len(ids):
        problems.append(f"{len(ids) - len(read_model)} runs asked for have no execution")
    if unended := sum(n for s, n in statuses.items() if s not in TERMINAL):
        problems.append(f"{unended} executions did not end")
    if doubled:
        problems.append(f"steps run twice within one attempt: {list(doubled)[:5]}")
    if mismatched:
        problems.append(f"job-api shows another attempt than the executor's last for {mismatched[:5]}")
    if len(summaries) != len(read_model):
        problems.append(f"{len(read_model) - len(summaries)} logs lack their summary line")
    if dead:
        problems.append(f"dead-lettered: {[(d['original_queue'], d['reason']) for d in dead[:5]]}")
    return problems


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", choices=["replicas", "broker", "database"], required=True)
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="runs asked for per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the broker or the database is down")
    parser.add_argument("--kills", type=int, default=8, help="replica stops (two SIGKILL, then one SIGTERM, ...)")
    args = parser.parse_args()
    admin = dev_environment(ROOT / ".dev")["AUTOMATION_ADMIN_TOKEN"]
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    record = work / "steps"
    record.touch(mode=0o666)
    replicas = Replicas(work)
    since = time.time()
    print(f"soak: outage {args.outage}, {args.runs} runs at {args.rate:g}/s, files in {work}")
    async with httpx.AsyncClient(timeout=30) as client:
        made = await client.post(
            f"{API}/accounts",
            json={"name": f"soak-{uuid.uuid4().hex[:8]}"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        made.raise_for_status()
        headers = {"Authorization": f"Bearer {made.json()['api_key']}"}
        jobs = []
        for definition in job_definitions(record):
            created = await client.post(f"{API}/jobs", json=definition, headers=headers)
            created.raise_for_status()
            jobs.append(created.json()["id"])
        for port in REPLICA_PORTS:
            await replicas.start(port)
        try:
            started = time.monotonic()
            (executions, retried), done = await asyncio.gather(
                request_runs(client, headers, jobs, args.runs, args.rate),
                outage(args.outage, replicas, args.seconds, args.kills),
            )
            for line in done:
                print(line)
            ids = list(executions.values())
            counts = await wait_ended(ids, timeout=300)
            print(f"all ended after {time.monotonic() - started:.1f}s: {counts}")
            print(f"requests retried after a 503 or a broken connection: {retried}")
        finally:
            await replicas.stop_all()
    problems = await check(ids, record, since)
    for problem in problems:
        print(f"FAILED: {problem}")
    print("soak passed" if not problems else "soak failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
