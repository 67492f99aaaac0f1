"""Soak the running suite (``make dev``) with events that trigger jobs while something breaks, then
check that every event fired each job it matches once, and each fire ran once.

    uv run --frozen python tests-soak/events.py --outage database   # stop PostgreSQL for a while
    uv run --frozen python tests-soak/events.py --outage broker     # stop RabbitMQ's app for a while
    uv run --frozen python tests-soak/events.py --outage replicas   # SIGKILL / SIGTERM extra executor replicas
    uv run --frozen python tests-soak/events.py --outage replicas --replicas scheduler   # ... extra schedulers
    uv run --frozen python tests-soak/events.py --outage replicas --replicas event_gateway   # ... gateways

It creates an account and jobs triggered by this soak's own event type ``soak.<tag>.ping``: ``--jobs``
jobs on every such event, and one more only on those whose ``data.kind`` is ``"b"`` (a ``where``
condition). Each job takes the event's ``data.n`` as its parameter ``n`` and its one shell step appends
``<execution> <attempt> <n>`` to a file. The soak posts ``--events`` events to event-gateway at
``--rate`` per second (each with its own id; a post answered 503 or cut off is sent again with the same
id, which event-gateway keeps once) while the outage happens, waits for every run to end, and checks,
from event-gateway's history, the scheduler's ``event_fires`` and job-api's read model:

- every event posted is kept once in the history;
- every event fired each job it matches exactly once (outcome ``fired``), and the kind-``b`` job no other;
- every fire has exactly one execution (trigger ``event``), which ``succeeded`` with the event's ``n``;
- no step ran twice within one attempt.

It prints how long an event took to start its runs (the executor's start minus the event's
``time``) and exits 1 when a check fails. The outages are those of ``soak.py``; bounded: ``--events``
posts to the suite on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from schedules import percentile, setup, wait_ended
from soak import (
    DATABASE_URL,
    ROOT,
    create_job,
    new_account,
    outage,
    verdict,
)

from automation_suite.supervisor import dev_environment

GATEWAY_PORTS = (8034, 8035)
"""Two more event-gateway replicas, beside the suite's, for ``--outage replicas --replicas event_gateway``;
the events are then posted to the three in turn."""
SOURCE = "/soak/events"


def job_definition(record: Path, event_type: str, *, only_kind: str | None = None) -> dict[str, Any]:
    mark = f'echo "$AUTOMATION_EXECUTION_ID $AUTOMATION_ATTEMPT $1" >> {record}'
    trigger: dict[str, Any] = {"type": event_type}
    if only_kind is not None:
        trigger["where"] = [{"path": "data.kind", "op": "eq", "value": only_kind}]
    return {
        "name": f"soak-event-{uuid.uuid4().hex[:8]}",
        "triggers": [trigger],
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "retries": 5,
        "retry_backoff": {"base_seconds": 0.2, "max_seconds": 1},
        "steps": [
            {
                "name": "t",
                "type": "shell",
                "config": {"command": ["bash", "-c", mark, "soak", "${{ parameters.n }}"]},
            }
        ],
    }


class Poster:
    """Posts the events, each until event-gateway has taken it (202 new, 200 duplicate)."""

    def __init__(self, client: httpx.AsyncClient, event_type: str, ports: tuple[int, ...] = (8004,)) -> None:
        self.client, self.event_type, self.ports = client, event_type, ports
        self.admin = dev_environment(ROOT / ".dev")["AUTOMATION_ADMIN_TOKEN"]
        self.sent: dict[str, dict[str, Any]] = {}  # event id → data
        self.retried = 0
        self.refused: list[str] = []

    async def post(self, n: int) -> None:
        event_id = str(uuid.uuid4())
        data = {"n": n, "kind": secrets.choice("ab")}
        body = {
            "specversion": "1.0",
            "id": event_id,
            "source": SOURCE,
            "type": self.event_type,
            "time": datetime.now(UTC).isoformat(),
            "data": data,
        }
        headers = {"Authorization": f"Bearer {self.admin}", "Content-Type": "application/cloudevents+json"}
        for attempt in itertools.count():
            url = f"http://127.0.0.1:{self.ports[(n + attempt) % len(self.ports)]}/api/v1/events"
            try:
                resp = await self.client.post(url, json=body, headers=headers)
            except httpx.HTTPError:
                resp = None
            if resp is not None and resp.status_code in (200, 202):
                self.sent[event_id] = data
                return
            if resp is not None and resp.status_code != 503:
                self.refused.append(f"{resp.status_code} {resp.text[:200]}")
                return
            self.retried += 1
            await asyncio.sleep(1)

    async def run(self, events: int, rate: float) -> None:
        posts = []
        for n in range(events):
            posts.append(asyncio.create_task(self.post(n)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*posts)


async def wait_bound(conn: asyncpg.Connection, pattern: str, timeout: float = 60) -> None:
    """Until the scheduler has bound its trigger queue to ``pattern`` (events before that are not seen)."""
    deadline = time.monotonic() + timeout
    while not await conn.fetchval("SELECT 1 FROM scheduler.trigger_bindings WHERE pattern = $1", pattern):
        if time.monotonic() > deadline:
            raise SystemExit(f"the scheduler did not bind {pattern} within {timeout:g}s")
        await asyncio.sleep(0.5)


async def check(conn: asyncpg.Connection, poster: Poster, every: list[str], only_b: str, record: Path) -> list[str]:
    """What went wrong, one line each; prints the figures."""
    jobs = [*every, only_b]
    ids = list(poster.sent)
    kept = await conn.fetch(
        "SELECT id, count(*) AS n FROM event_gateway.events WHERE source = $1 AND id = ANY($2) GROUP BY id",
        SOURCE,
        ids,
    )
    fires = await conn.fetch(
        """SELECT job_id::text, event_id, outcome, reason, execution_id::text FROM scheduler.event_fires
           WHERE job_id = ANY($1::uuid[])""",
        jobs,
    )
    executions = await conn.fetch(
        """SELECT id::text, job_id::text, status, trigger, parameters, started_at FROM job_api.executions
           WHERE job_id = ANY($1::uuid[])""",
        jobs,
    )
    times = {
        r["id"]: r["time"]
        for r in await conn.fetch(
            "SELECT id, time FROM event_gateway.events WHERE source = $1 AND id = ANY($2)", SOURCE, ids
        )
    }
    problems: list[str] = []
    if missing := set(ids) - {r["id"] for r in kept}:
        problems.append(f"{len(missing)} events posted are not in the history: {sorted(missing)[:3]}")
    if twice := [r["id"] for r in kept if r["n"] > 1]:
        problems.append(f"{len(twice)} events kept twice: {twice[:3]}")
    want = {(job, e) for job in every for e in ids} | {(only_b, e) for e, d in poster.sent.items() if d["kind"] == "b"}
    got = collections.Counter((r["job_id"], r["event_id"]) for r in fires)
    outcomes = collections.Counter(r["outcome"] for r in fires)
    unfired = [k for k in want if got[k] == 0]
    extra = [k for k in got if k not in want and k[1] in poster.sent]
    not_fired = [(r["job_id"], r["event_id"], r["outcome"], r["reason"]) for r in fires if r["outcome"] != "fired"]
    by_id = {r["id"]: r for r in executions}
    fired = {(r["job_id"], r["event_id"]): r["execution_id"] for r in fires if r["outcome"] == "fired"}
    without = [k for k, x in fired.items() if x not in by_id]
    strays = [x for x in by_id if x not in set(fired.values())]
    wrong_n = [
        x
        for (job, event), x in fired.items()
        if x in by_id and json.loads(by_id[x]["parameters"] or "{}").get("n") != poster.sent.get(event, {}).get("n")
    ]
    statuses = collections.Counter(r["status"] for r in executions)
    marks = collections.Counter(
        tuple(line.split()) for line in (await asyncio.to_thread(record.read_text)).splitlines() if line.strip()
    )
    reran = [k for k, n in marks.items() if n > 1]
    event_of = {x: event for (_, event), x in fired.items()}
    marked_n = [k for k in marks if k[0] in event_of and int(k[2]) != poster.sent[event_of[k[0]]]["n"]]
    late = [
        (by_id[x]["started_at"] - times[event]).total_seconds() * 1000
        for (_, event), x in fired.items()
        if x in by_id and by_id[x]["started_at"] is not None and times.get(event) is not None
    ]
    print(f"events posted: {len(ids)} (posts retried after a 503 or a cut connection: {poster.retried})")
    print(f"fires wanted: {len(want)}; recorded: {sum(got.values())}; outcomes {dict(outcomes)}")
    print(
        f"event to start ms (the run's start - the event's time): p50 {percentile(late, 0.5):.1f},"
        f" p99 {percentile(late, 0.99):.1f}, max {max(late, default=float('nan')):.1f}"
    )
    print(f"executions: {len(executions)}; statuses {dict(statuses)}")
    print(f"step runs recorded: {len(marks)}; run twice within one attempt: {len(reran)}")
    checks = [
        (bool(poster.refused), f"event-gateway refused events: {poster.refused[:3]}"),
        (bool(unfired), f"{len(unfired)} (job, event) pairs that should have fired have no outcome: {unfired[:3]}"),
        (bool(extra), f"{len(extra)} fires of a job its event does not match: {extra[:3]}"),
        (bool(not_fired), f"{len(not_fired)} matching events not fired: {not_fired[:3]}"),
        (any(n > 1 for n in got.values()), "an event has two outcomes for one job"),
        (bool(without), f"{len(without)} fires have no execution in job-api: {without[:3]}"),
        (bool(strays), f"{len(strays)} executions stand for no fire: {strays[:3]}"),
        (bool(wrong_n), f"{len(wrong_n)} executions with another parameter n than their event's: {wrong_n[:3]}"),
        (bool(marked_n), f"{len(marked_n)} steps ran with another n than their event's: {marked_n[:3]}"),
        (
            bool(other := {s: n for s, n in statuses.items() if s != "succeeded"}),
            f"executions that did not succeed: {other}",
        ),
        (bool(reran), f"a step ran twice within one attempt: {reran[:3]}"),
    ]
    problems += [problem for failed, problem in checks if failed]
    return problems


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3, help="jobs triggered by every event (plus one by kind b)")
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--rate", type=float, default=10.0, help="events posted per second")
    args, work, record, replicas = setup(parser, "soak-events-", more={"event_gateway": GATEWAY_PORTS})
    event_type = f"soak.e{uuid.uuid4().hex[:8]}.ping"
    print(
        f"soak: outage {args.outage}, {args.events} events of {event_type} at {args.rate:g}/s"
        f" for {args.jobs} + 1 jobs; files in {work}"
    )
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = await new_account(client)
            every = [await create_job(client, headers, job_definition(record, event_type)) for _ in range(args.jobs)]
            only_b = await create_job(client, headers, job_definition(record, event_type, only_kind="b"))
            await wait_bound(conn, event_type)
            if args.outage == "replicas":
                for port in replicas.ports:
                    await replicas.start(port)
            gateways = (8004, *GATEWAY_PORTS) if args.replicas == "event_gateway" else (8004,)
            poster = Poster(client, event_type, gateways)
            try:
                started = time.monotonic()
                _, done = await asyncio.gather(
                    poster.run(args.events, args.rate), outage(args.outage, replicas, args.seconds, args.kills)
                )
                for line in done:
                    print(line)
            finally:
                await replicas.stop_all()
    finally:
        await conn.close()
    conn = await asyncpg.connect(DATABASE_URL)  # a new one: the database may have restarted under the first
    try:
        wanted = len(poster.sent) * len(every) + sum(d["kind"] == "b" for d in poster.sent.values())
        counts = await wait_ended(conn, [*every, only_b], timeout=300, expected=wanted)
        print(f"all ended after {time.monotonic() - started:.1f}s: {counts}")
        problems = await check(conn, poster, every, only_b, record)
    finally:
        await conn.close()
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
