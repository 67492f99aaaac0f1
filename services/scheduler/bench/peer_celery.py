"""Peer: Celery beat with N in-memory interval entries (the Celery app of a ``celery beat`` benchmark process).

Run as ``celery -A peer_celery beat -S peer_celery:BenchScheduler`` with ``BENCH_BROKER`` (an AMQP URL
with its own vhost), ``BENCH_ENTRIES``, ``BENCH_PERIOD`` (seconds) and ``BENCH_FIRST`` (Unix time of
entry 0's first due time) in the environment.

:class:`BenchScheduler` is Celery's in-memory ``celery.beat.Scheduler`` with two additions only:

- the N entries are ``schedule(timedelta(seconds=P))`` whose ``last_run_at`` is staggered so that entry i
  is first due at ``BENCH_FIRST + i * P / N`` (N / P sends per second, spread evenly);
- each send carries two headers, ``x-bench-due`` (``last_run_at + run_every``: the due time beat itself
  computes for an interval entry) and ``x-bench-sent`` (the clock as beat hands the task to kombu). The
  stamp is put on a shallow copy of the entry, so the schedule beat compares on every tick is untouched.

Beat publishes ``bench.tick`` task messages (protocol 2, no worker) to the default ``celery`` queue, with
Celery's defaults: persistent messages, no publisher confirms. A Celery interval entry is due
``run_every`` after its *previous send*, so its nominal grid drifts by each send's lateness; lateness is
measured against that due time, as beat defines it.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from celery.beat import ScheduleEntry, Scheduler  # type: ignore[import-untyped]

app = Celery("bench", broker=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(timezone="UTC", enable_utc=True)


class BenchScheduler(Scheduler):  # type: ignore[misc]
    """Celery's in-memory beat scheduler with staggered entries and due-time stamps."""

    def setup_schedule(self) -> None:
        entries = int(os.environ["BENCH_ENTRIES"])
        period = float(os.environ["BENCH_PERIOD"])
        first = float(os.environ["BENCH_FIRST"])
        every = timedelta(seconds=period)
        step = period / entries
        for i in range(entries):
            name = f"bench-{i}"
            last = datetime.fromtimestamp(first - period + i * step, UTC)
            self.schedule[name] = self.Entry(
                name=name, task="bench.tick", schedule=every, last_run_at=last, app=self.app
            )

    def apply_async(self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        due = entry.last_run_at + entry.schedule.run_every
        stamped = object.__new__(type(entry))
        stamped.__dict__.update(entry.__dict__)
        stamped.options = {**entry.options, "headers": {"x-bench-due": due.timestamp(), "x-bench-sent": time.time()}}
        return super().apply_async(stamped, producer, advance, **kwargs)
