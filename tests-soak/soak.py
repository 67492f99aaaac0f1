"""Soak the running suite (``make dev``) with runs while something breaks, then check that nothing was
lost or doubled.

    uv run --frozen python tests-soak/soak.py --outage replicas   # SIGKILL / SIGTERM extra executor replicas
    uv run --frozen python tests-soak/soak.py --outage broker     # stop RabbitMQ's app for a while
    uv run --frozen python tests-soak/soak.py --outage database   # stop PostgreSQL for a while
    uv run --frozen python tests-soak/soak.py --outage database-frozen   # freeze it (SIGSTOP) for a while
    uv run --frozen python tests-soak/soak.py --outage broker-frozen     # freeze RabbitMQ for a while
    uv run --frozen python tests-soak/soak.py --outage replicas --replicas browser_pool   # ... browser-pools
    uv run --frozen python tests-soak/soak.py --outage replicas --replicas job_api        # ... job-apis

It creates an account and a job of each kind (:func:`job_definitions`), starts two more executor
replicas (or browser-pool or job-api replicas) beside the suite's own, asks for ``--runs`` manual runs
over job-api (``Idempotency-Key`` on each, retried on 503 and connection errors) while the outage
happens, waits for every run to end, and checks, from the databases and the steps' own record:

- every run asked for has exactly one execution, and it ended (none left ``queued`` or ``running``);
- no step ran twice within one attempt (each shell step appends ``<execution> <step> <attempt>`` to a
  file; an attempt lost to a killed replica is retried as the next attempt, which is allowed);
- job-api's read model shows the executor's last attempt, and every execution's log ends with its
  attempt's summary line;
- nothing was dead-lettered during the soak.

The outages act on this machine's services: ``rabbitmqctl stop_app`` / ``start_app``,
``pg_ctlcluster <version> main stop`` / ``start`` (Debian's PostgreSQL), and SIGSTOP / SIGCONT to every
``postgres`` or ``beam.smp`` process, so it needs the rights to do that. It prints its figures and
exits 1 when a check fails. Bounded: ``--runs`` requests at ``--rate`` per second, to the suite on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import itertools
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
POOL_PORTS = (8023, 8024)
"""Two more browser-pool replicas, beside the suite's, for ``--outage replicas --replicas browser_pool``."""
API_PORTS = (8045, 8046)
"""Two more job-api replicas, beside the suite's, for ``--outage replicas --replicas job_api``: the runs are
then asked for, and cancelled, at the three in turn (a request cut off by a stop goes to the next, with
its ``Idempotency-Key``), and the three share the execution events."""
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
    """Replicas of a service (the executor, or the scheduler) beside the suite's, with the suite's
    environment, on ``ports``."""

    def __init__(self, log_dir: Path, service: str = "executor", ports: tuple[int, ...] = REPLICA_PORTS) -> None:
        self.env = dev_environment(ROOT / ".dev") | {"AUTOMATION_LOG_FORMAT": "json"}
        self.log_dir, self.service, self.ports = log_dir, service, ports
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{self.service}-{port}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", f"automation_{self.service}", "serve"],
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
        raise SystemExit(f"{self.service} replica on port {port} did not get ready; see {self.log_dir}")

    async def stop(self, port: int, sig: signal.Signals) -> None:
        process = self.processes.pop(port)
        if sig == signal.SIGKILL:
            os.killpg(process.pid, sig)  # the replica and its children, as a node failure would
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
            port = secrets.choice(replicas.ports)
            sig = signal.SIGTERM if k % 3 == 2 else signal.SIGKILL
            done.append(f"{time.strftime('%X')} {sig.name} {replicas.service} replica :{port}")
            await replicas.stop(port, sig)
            await asyncio.sleep(0.5 + secrets.randbelow(16) / 10)
            await replicas.start(port)
            await asyncio.sleep(1 + secrets.randbelow(21) / 10)
    elif kind == "broker":
        done.append(f"{time.strftime('%X')} rabbitmqctl stop_app for {seconds:g}s")
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "stop_app"], capture_output=True, check=True)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "start_app"], capture_output=True, check=True)
    elif kind == "database":
        done.append(f"{time.strftime('%X')} PostgreSQL stopped for {seconds:g}s")
        await asyncio.to_thread(subprocess.run, postgres_cluster("stop"), capture_output=True, check=True)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(subprocess.run, postgres_cluster("start"), capture_output=True, check=True)
    elif kind in FROZEN:
        name = FROZEN[kind]
        found = await asyncio.to_thread(
            subprocess.run, ["pgrep", "-x", name], capture_output=True, text=True, check=False
        )
        pids = [int(pid) for pid in found.stdout.split()]
        if not pids:
            raise SystemExit(f"no {name} process to freeze")
        done.append(f"{time.strftime('%X')} {len(pids)} {name} processes frozen (SIGSTOP) for {seconds:g}s")
        try:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(seconds)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    return done


FROZEN = {"database-frozen": "postgres", "broker-frozen": "beam.smp"}
"""The outages that freeze a server's processes (SIGSTOP, then SIGCONT) rather than stop it: nothing
refuses or breaks a connection, statements and publishes wait without an answer, as through a stalled
disk, a paused virtual machine or a network that drops packets."""


KINDS = ("shell", "python", "true", "flaky", "capped", "timeout", "cancel", "browser")
"""The jobs of the soak; ``--mix basic`` runs the first three only (each ends ``succeeded``)."""
CAPPED_CONCURRENCY = 2


def outage_arguments(parser: argparse.ArgumentParser, *, kills: int, outage: str | None = None) -> argparse.Namespace:
    """Add the outage options (``--outage``, ``--seconds``, ``--kills``) and parse the command line."""
    parser.add_argument(
        "--outage",
        choices=["replicas", "broker", "database", *FROZEN, "none"],
        required=outage is None,
        default=outage,
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="how long the broker or the database is down or frozen"
    )
    parser.add_argument("--kills", type=int, default=kills, help="replica stops (two SIGKILL, then one SIGTERM, ...)")
    return parser.parse_args()


def verdict(problems: list[str]) -> int:
    """Print each problem and the verdict; the exit status (1 when a check failed)."""
    for problem in problems:
        print(f"FAILED: {problem}")
    print("soak passed" if not problems else "soak failed")
    return 1 if problems else 0


async def new_account(client: httpx.AsyncClient) -> dict[str, str]:
    """A new account (made with the suite's admin token); the headers of its API key."""
    admin = dev_environment(ROOT / ".dev")["AUTOMATION_ADMIN_TOKEN"]
    made = await client.post(
        f"{API}/accounts", json={"name": f"soak-{uuid.uuid4().hex[:8]}"}, headers={"Authorization": f"Bearer {admin}"}
    )
    made.raise_for_status()
    return {"Authorization": f"Bearer {made.json()['api_key']}"}


async def create_job(client: httpx.AsyncClient, headers: dict[str, str], definition: dict[str, Any]) -> str:
    """Create a job; its id (exits with job-api's answer when it is refused)."""
    created = await client.post(f"{API}/jobs", json=definition, headers=headers)
    if created.status_code != 201:
        raise SystemExit(f"job-api refused the job {definition['name']}: {created.status_code} {created.text}")
    return str(created.json()["id"])


def job_definitions(record: Path, spans: Path) -> dict[str, dict[str, Any]]:
    """Each kind's job, as sent to job-api. Every shell step appends ``<execution> <step> <attempt>`` to
    ``record``; the capped job's step also writes when it starts and ends to ``spans``.

    - shell, python, true: end ``succeeded``;
    - flaky: fails its first two attempts, succeeds on the third (``retries: 5``, a short backoff);
    - capped: ``max_concurrency: 2``; no more than two of its steps run at any time, across replicas;
    - timeout: a step that sleeps past the job's 1-s timeout: ``timed_out``, no retry;
    - cancel: a 4-s step, then one that must never run; the soak cancels each run 0-2 s after asking;
    - browser: a browser task (job-api's ``/healthz``, then 0.2-1.5 s in the page) sent to browser-pool;
      ``succeeded`` at its first attempt, as it has no retries: neither a broker restart nor a browser-pool
      replica stopped under it may fail it.
    """

    def mark(step: str) -> str:
        return f'echo "$AUTOMATION_EXECUTION_ID {step} $AUTOMATION_ATTEMPT" >> {record}'

    def span(edge: str) -> str:
        return f'echo "$AUTOMATION_EXECUTION_ID $AUTOMATION_ATTEMPT {edge} $(date +%s.%N)" >> {spans}'

    def shell(name: str, script: str) -> dict[str, Any]:
        return {"name": name, "type": "shell", "config": {"command": ["bash", "-c", script]}}

    sleep = "sleep $((RANDOM % 2)).$((RANDOM % 10))"
    quick = {"base_seconds": 0.2, "max_seconds": 1}
    return {
        "shell": {"retries": 5, "steps": [shell("a", f"{mark('a')}; {sleep}"), shell("b", mark("b"))]},
        "python": {
            "retries": 5,
            "steps": [
                {"name": "p", "type": "python", "config": {"handler": "automation_executor.examples.handlers:noop"}}
            ],
        },
        "true": {"retries": 5, "steps": [{"name": "t", "type": "shell", "config": {"command": ["true"]}}]},
        "flaky": {
            "retries": 5,
            "retry_backoff": quick,
            "steps": [shell("f", f'{mark("f")}; [ "$AUTOMATION_ATTEMPT" -ge 3 ]')],
        },
        "capped": {
            "retries": 5,
            "retry_backoff": quick,
            "max_concurrency": CAPPED_CONCURRENCY,
            "steps": [shell("c", f"{mark('c')}; {span('start')}; sleep 0.2; {span('end')}")],
        },
        "timeout": {"timeout_seconds": 1, "steps": [shell("s", f"{mark('s')}; sleep 10")]},
        "cancel": {"retries": 5, "steps": [shell("w", f"{mark('w')}; sleep 4"), shell("after", mark("after"))]},
        "browser": {
            "steps": [
                {
                    "name": "page",
                    "type": "browser",
                    "config": {
                        "actions": [
                            {"type": "goto", "url": f"{API.removesuffix('/api/v1')}/healthz"},
                            {
                                "type": "evaluate",
                                "name": "waited",
                                "expression": "() => new Promise(r => setTimeout(() => r(1), 200 + Math.random() * 1300))",  # noqa: E501
                            },
                        ],
                        "timeout_seconds": 30,
                    },
                }
            ]
        },
    }


class Requests:
    """The runs asked for: each with its own ``Idempotency-Key``, retried until accepted (on a 503 or a
    broken connection); the cancel kind's runs are cancelled 0-2 s after they are accepted."""

    def __init__(
        self, client: httpx.AsyncClient, headers: dict[str, str], jobs: dict[str, str], apis: tuple[str, ...] = (API,)
    ) -> None:
        self.client, self.headers, self.jobs = client, headers, jobs
        self._apis = itertools.cycle(apis)
        self.kind_of: dict[str, str] = {}  # execution id → kind
        self.retried = 0
        self.cancelled: set[str] = set()  # cancellations accepted (202)
        self.cancel_refused: list[str] = []
        self.ended_first: set[str] = set()  # cancellations held back by the outage until their run had ended
        self._cancels: list[asyncio.Task[None]] = []

    async def _post(self, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
        while True:
            try:
                resp = await self.client.post(
                    f"{next(self._apis)}{path}", json=body, headers=self.headers | {"Idempotency-Key": key}
                )
            except httpx.HTTPError:
                resp = None
            if resp is not None and resp.status_code != 503:
                return resp
            self.retried += 1
            await asyncio.sleep(1)

    async def _cancel(self, execution: str) -> None:
        await asyncio.sleep(secrets.randbelow(21) / 10)
        resp = await self._post(f"/executions/{execution}/cancel", str(uuid.uuid4()), {"reason": "soak"})
        if resp.status_code == 202:
            self.cancelled.add(execution)
        elif resp.status_code == 409 and "execution is already" in resp.text:
            self.ended_first.add(execution)  # its POST was retried (503) until after the run's end
        else:
            self.cancel_refused.append(f"{execution}: {resp.status_code} {resp.text[:200]}")

    async def run(self, runs: int, rate: float) -> None:
        for _ in range(runs):
            kind = secrets.choice(list(self.jobs))
            resp = await self._post(f"/jobs/{self.jobs[kind]}/execute", str(uuid.uuid4()), {})
            if resp.status_code != 202:
                raise SystemExit(f"job-api refused a run: {resp.status_code} {resp.text}")
            execution = resp.json()["execution_id"]
            self.kind_of[execution] = kind
            if kind == "cancel":
                self._cancels.append(asyncio.create_task(self._cancel(execution)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*self._cancels)


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


EXPECTED = {"flaky": "succeeded", "timeout": "timed_out", "cancel": "cancelled"}
"""Each kind's final status (the others: ``succeeded``); a run whose last attempt was lost with no retry
left ends ``failed`` whatever its kind."""


def most_at_once(spans: list[str]) -> tuple[int, int]:
    """The most capped steps running at one time, and how many started without an end (killed)."""
    edges: dict[tuple[str, str], dict[str, float]] = collections.defaultdict(dict)
    for line in spans:
        execution, attempt, edge, at = line.split()
        edges[(execution, attempt)][edge] = float(at)
    points = sorted(
        (at, +1 if edge == "start" else -1) for span in edges.values() if len(span) == 2 for edge, at in span.items()
    )
    most = running = 0
    for _, step in points:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most, sum(len(span) == 1 for span in edges.values())


@dataclasses.dataclass
class Findings:
    """What the databases and the steps' own files say about the runs asked for."""

    requests: Requests
    read_model: list[Any]  # job-api: id, status, attempt
    history: dict[str, tuple[str, ...]]  # the executor's attempts' statuses, in order
    last_attempt: dict[str, int]
    marks: collections.Counter[tuple[str, ...]]  # (execution, step, attempt) → times run
    spans: list[str]
    reruns: int  # attempts run again after they were handed back (run_count > 1)
    summaries: int  # logs ending with their attempt's summary line
    dead: list[Any]  # dead letters received during the soak: queue, type, reason, execution id
    too_late: set[str]  # runs that ended before any executor learned of their cancellation

    def kind(self, execution: str) -> str:
        return self.requests.kind_of[execution]

    def failed_for_good(self) -> set[str]:
        """Runs that end failed or timed out: their last request is dead-lettered, as it should be."""
        return {r["id"] for r in self.read_model if r["status"] in {"failed", "timed_out"}}

    def report(self) -> None:
        statuses = collections.Counter((self.kind(r["id"]), r["status"]) for r in self.read_model)
        print(f"executions: {len(self.read_model)} of {len(self.requests.kind_of)} asked for")
        for (kind, status), n in sorted(statuses.items()):
            print(f"  {kind:8} {status:10} {n}")
        print("attempt histories:")
        for (kind, h), n in sorted(collections.Counter((self.kind(e), h) for e, h in self.history.items()).items()):
            print(f"  {kind:8} {' → '.join(h)}: {n}")
        most, cut = most_at_once(self.spans)
        print(f"reruns of a handed-back attempt (run_count > 1): {self.reruns}")
        print(f"shell steps recorded: {len(self.marks)}; run twice within one attempt: {self.doubled()}")
        print(f"capped job: at most {most} steps at once (limit {CAPPED_CONCURRENCY}); {cut} cut short")
        r = self.requests
        print(
            f"cancellations accepted: {len(r.cancelled)}; refused: {len(r.cancel_refused)};"
            f" reached the executors after their run had ended: {len(self.too_late)};"
            f" reached job-api after their run had ended (409): {len(r.ended_first)}"
        )
        print(f"logs ending with their attempt's summary: {self.summaries} of {len(self.read_model)}")
        expected = sum(d["execution_id"] in self.failed_for_good() for d in self.dead)
        print(f"dead letters during the soak: {len(self.dead)} ({expected} the last request of a failed run)")

    def doubled(self) -> int:
        return sum(n > 1 for n in self.marks.values())

    def problems(self) -> list[str]:
        """What went wrong, one line each (empty: every check passed)."""
        r = self.requests
        unended = [x["id"] for x in self.read_model if x["status"] not in TERMINAL]
        unexpected = [
            f"{x['id']} ({self.kind(x['id'])}): {x['status']} after {self.history.get(x['id'])}"
            for x in self.read_model
            if x["status"] != EXPECTED.get(self.kind(x["id"]), "succeeded")
            and not (x["status"] == "failed" and self.history.get(x["id"], ("",))[-1] == "lost")
            and not (x["status"] == "succeeded" and x["id"] in self.too_late | self.requests.ended_first)
        ]
        flaky = [e for e, h in self.history.items() if self.kind(e) == "flaky" and h.count("failed") < 2]
        failed = self.failed_for_good()
        once = collections.Counter(d["execution_id"] for d in self.dead if d["message_type"] == "run.requested")
        stray = [
            (d["original_queue"], d["reason"])
            for d in self.dead
            if d["message_type"] != "run.requested" or d["execution_id"] not in failed or once[d["execution_id"]] > 1
        ]
        checks = [
            (len(self.read_model) != len(r.kind_of), f"{len(r.kind_of) - len(self.read_model)} runs have no execution"),
            (bool(unended), f"{len(unended)} executions did not end: {unended[:5]}"),
            (bool(unexpected), f"{len(unexpected)} runs ended otherwise than their kind says: {unexpected[:5]}"),
            (bool(flaky), f"flaky runs that succeeded before their third attempt: {flaky[:5]}"),
            (
                self.doubled() > 0,
                f"steps run twice within one attempt: {[k for k, n in self.marks.items() if n > 1][:5]}",
            ),
            (
                most_at_once(self.spans)[0] > CAPPED_CONCURRENCY,
                f"the capped job ran over max_concurrency {CAPPED_CONCURRENCY}",
            ),
            (bool(r.cancel_refused), f"cancellations refused: {r.cancel_refused[:5]}"),
            (bool(after := self.ran_after_cancel()), f"a step ran after its run was cancelled: {after[:5]}"),
            (
                bool(other := self.other_attempt()),
                f"job-api shows another attempt than the executor's last: {other[:5]}",
            ),
            (
                self.summaries != len(self.read_model),
                f"{len(self.read_model) - self.summaries} logs lack their summary",
            ),
            (bool(stray), f"dead-lettered besides the failed runs' last requests: {stray[:5]}"),
        ]
        return [problem for failed_check, problem in checks if failed_check]

    def ran_after_cancel(self) -> list[str]:
        cancelled = self.requests.cancelled - self.too_late
        return sorted({k[0] for k in self.marks if k[1] == "after" and k[0] in cancelled})

    def other_attempt(self) -> list[str]:
        return [x["id"] for x in self.read_model if x["attempt"] != self.last_attempt.get(x["id"], 0)]


async def gather_findings(requests: Requests, record: Path, spans: Path, since: float) -> Findings:
    ids = list(requests.kind_of)
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        read_model = await conn.fetch(
            "SELECT id::text, status, attempt FROM job_api.executions WHERE id = ANY($1::uuid[])", ids
        )
        attempts = await conn.fetch(
            """SELECT execution_id::text, attempt, status, run_count FROM executor.attempts
               WHERE execution_id = ANY($1::uuid[]) ORDER BY execution_id, attempt""",
            ids,
        )
        summaries = await conn.fetchval(
            """SELECT count(DISTINCT l.execution_id)
               FROM job_api.execution_logs l
               JOIN job_api.executions x ON x.id = l.execution_id AND x.attempt = l.attempt,
               jsonb_array_elements(l.entries) e
               WHERE l.execution_id = ANY($1::uuid[]) AND e->>'stream' = 'system'
                 AND e->>'text' ~ '^attempt [0-9]+ (succeeded|failed|timed out|cancelled|lost)'""",
            ids,
        )
        dead = await conn.fetch(
            """SELECT original_queue, message_type, left(reason, 200) AS reason,
                      convert_from(body, 'UTF8')::jsonb -> 'data' ->> 'execution_id' AS execution_id
               FROM job_api.dead_letters WHERE received_at >= to_timestamp($1)""",
            since,
        )
        # A cancellation job-api accepted while the broker was down reaches the executors when it is
        # back; a run that ended before that ran to its end, as one whose cancellation crossed its end.
        too_late = await conn.fetch(
            """SELECT a.execution_id::text FROM executor.attempts a
               LEFT JOIN executor.cancellations c ON c.execution_id = a.execution_id
               WHERE a.execution_id = ANY($1::uuid[]) AND a.status = 'succeeded'
                 AND (c.created_at IS NULL OR c.created_at > a.finished_at)""",
            list(requests.cancelled),
        )
    finally:
        await conn.close()
    history: dict[str, tuple[str, ...]] = collections.defaultdict(tuple)
    for row in attempts:
        history[row["execution_id"]] += (row["status"],)
    lines = (await asyncio.to_thread(record.read_text)).splitlines()
    return Findings(
        requests=requests,
        read_model=list(read_model),
        history=dict(history),
        last_attempt={row["execution_id"]: row["attempt"] for row in attempts},
        marks=collections.Counter(tuple(line.split()) for line in lines if line.strip()),
        spans=(await asyncio.to_thread(spans.read_text)).splitlines(),
        reruns=sum(row["run_count"] > 1 for row in attempts),
        summaries=summaries,
        dead=list(dead),
        too_late={row["execution_id"] for row in too_late},
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", choices=["all", "basic"], default="all", help="the job kinds (see KINDS)")
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="runs asked for per second")
    parser.add_argument(
        "--replicas",
        choices=["executor", "browser_pool", "job_api"],
        default="executor",
        help="what --outage replicas stops",
    )
    args = outage_arguments(parser, kills=8)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    record, spans = work / "steps", work / "spans"
    for path in (record, spans):
        path.touch(mode=0o666)
    ports = {"executor": REPLICA_PORTS, "browser_pool": POOL_PORTS, "job_api": API_PORTS}[args.replicas]
    replicas = Replicas(work, service=args.replicas, ports=ports)
    since = time.time()
    kinds = KINDS if args.mix == "all" else KINDS[:3]
    print(f"soak: outage {args.outage}, {args.runs} runs at {args.rate:g}/s of {', '.join(kinds)}; files in {work}")
    async with httpx.AsyncClient(timeout=30) as client:
        headers = await new_account(client)
        definitions = job_definitions(record, spans)
        jobs = {
            kind: await create_job(client, headers, definitions[kind] | {"name": f"soak-{kind}-{uuid.uuid4().hex[:6]}"})
            for kind in kinds
        }
        extra = API_PORTS if args.replicas == "job_api" else ()
        requests = Requests(client, headers, jobs, (API, *(f"http://127.0.0.1:{port}/api/v1" for port in extra)))
        for port in replicas.ports:
            await replicas.start(port)
        try:
            started = time.monotonic()
            _, done = await asyncio.gather(
                requests.run(args.runs, args.rate),
                outage(args.outage, replicas, args.seconds, args.kills),
            )
            for line in done:
                print(line)
            counts = await wait_ended(list(requests.kind_of), timeout=300)
            print(f"all ended after {time.monotonic() - started:.1f}s: {counts}")
            print(f"requests retried after a 503 or a broken connection: {requests.retried}")
        finally:
            await replicas.stop_all()
    findings = await gather_findings(requests, record, spans, since)
    findings.report()
    problems = findings.problems()
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
