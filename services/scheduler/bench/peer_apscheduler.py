"""Peer: APScheduler 3 (``AsyncIOScheduler``, memory job store) firing N interval jobs (a benchmark process).

``python peer_apscheduler.py --jobs N --period P --first T0 --until T1 --out FILE``

Job i is ``IntervalTrigger(seconds=P, start_date=T0 + i * P / N)``, so the N jobs offer N / P fires/s
spread evenly, like the platform's ``@every`` schedules. The job function is a trivial coroutine that
takes ``time.time()`` as it starts; the ``EVENT_JOB_EXECUTED`` listener pairs that time with the
event's ``scheduled_run_time``, the run time APScheduler computed. Job defaults: ``coalesce=False``,
``misfire_grace_time=None`` (a late run still runs and is counted late, never dropped),
``max_instances=1``; misses and max-instance skips are counted anyway. It writes the same JSON document
as ``bench_consumer`` (the fire is the job function starting; there is no broker in between).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]


class Recorder:
    """Job start times, paired with the scheduled run times of the executed events."""

    def __init__(self) -> None:
        self.started: dict[str, deque[float]] = defaultdict(deque)
        self.nominal: list[float] = []
        self.arrival: list[float] = []
        self.missed = 0
        self.max_instances = 0

    async def tick(self, job_id: str) -> None:
        self.started[job_id].append(time.time())

    def on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_EXECUTED:
            self.nominal.append(event.scheduled_run_time.timestamp())
            self.arrival.append(self.started[event.job_id].popleft())
        elif event.code == EVENT_JOB_MISSED:
            self.missed += 1
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.max_instances += 1

    def result(self) -> dict[str, Any]:
        return {
            "duplicates": 0,
            "nominal": self.nominal,
            "requested": self.arrival,
            "built": self.arrival,
            "arrival": self.arrival,
            "kind": "e" * len(self.nominal),
            "missed": self.missed,
            "max_instances": self.max_instances,
        }


async def run(jobs: int, period: float, first: float, until: float) -> dict[str, Any]:
    recorder = Recorder()
    scheduler = AsyncIOScheduler(
        timezone=UTC, job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1}
    )
    scheduler.add_listener(recorder.on_event, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    step = period / jobs
    for i in range(jobs):
        start = datetime.fromtimestamp(first, UTC) + timedelta(seconds=i * step)
        trigger = IntervalTrigger(seconds=period, start_date=start, timezone=UTC)
        scheduler.add_job(recorder.tick, trigger, args=[str(i)], id=str(i))
    scheduler.start()
    print("scheduled", flush=True)  # the parent waits for this line
    await asyncio.sleep(max(0.0, until - time.time()))
    scheduler.shutdown(wait=False)
    return recorder.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--period", type=float, required=True, help="seconds between two fires of a job")
    parser.add_argument("--first", type=float, required=True, help="Unix time of job 0's first fire")
    parser.add_argument("--until", type=float, required=True, help="stop at this Unix time")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, args.period, args.first, args.until))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
