"""Figures of one benchmark run: percentiles over a measurement window, and the printed table.

Every system is measured the same way from the consumer's records (see ``bench_consumer``), over the
messages that *arrived* during the window ``[w0, w1)`` (after a warm-up), so a system that falls behind
shows its growing delay rather than nothing:

- **fires/s**: distinct messages that arrived during the window, divided by its length;
- **slots**: distinct nominal times inside the window delivered by the end of the drain (against the
  count the schedules imply, where it is known: a shortfall is a backlog, or a lost fire);
- **fire lateness**: the publish time minus nominal time, the issue's definition (platform: the
  ``x-published-at`` header the publisher stamps, in milliseconds, when it writes the message; Celery:
  the send time beat stamps; APScheduler: the job function's start);
- **end to end**: arrival time minus nominal time (fire lateness plus queue delay);
- **claim**: the time the system decided to fire (platform: ``requested_at``, the slot's publish time
  when decided ahead of it, else the fire transaction's time; Celery: the send time beat stamps;
  APScheduler: the job function's start) minus nominal time;
- **queue delay**: arrival minus the publish time (the publish-to-executor-queue delay: routing,
  queueing and delivery to the consumer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Spread:
    """p50 / p99 / max of a latency, in milliseconds."""

    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: list[float]) -> Spread:
        values = sorted(seconds)
        top = values[-1] if values else math.nan
        return cls(percentile(values, 50) * 1000, percentile(values, 99) * 1000, top * 1000)

    def text(self) -> str:
        return f"{self.p50:.1f} / {self.p99:.1f} / {self.max:.1f}"


@dataclass
class Measured:
    """What the consumer saw in the window."""

    fires_per_s: float
    slots: int
    lateness: Spread
    """Fire lateness: publish time - nominal time."""
    end_to_end: Spread
    """Arrival - nominal time."""
    claim: Spread
    queue_delay: Spread
    duplicates: int
    by_kind: dict[str, Spread] = field(default_factory=dict)


def measure(records: dict[str, Any], w0: float, w1: float) -> Measured:
    """Figures over the window ``[w0, w1)`` (Unix seconds) from a consumer's JSON document."""
    nominal: list[float] = records["nominal"]
    arrival: list[float] = records["arrival"]
    requested: list[float] = records["requested"]
    published: list[float] = records.get("published", records["built"])
    kinds: str = records["kind"]
    late: list[float] = []
    end_to_end: list[float] = []
    claim: list[float] = []
    queue: list[float] = []
    per_kind: dict[str, list[float]] = {}
    for i, arrived in enumerate(arrival):
        if not w0 <= arrived < w1:
            continue
        late.append(published[i] - nominal[i])
        end_to_end.append(arrived - nominal[i])
        claim.append(requested[i] - nominal[i])
        queue.append(arrived - published[i])
        per_kind.setdefault(kinds[i], []).append(published[i] - nominal[i])
    names = {"e": "@every", "c": "cron"}
    return Measured(
        fires_per_s=len(late) / (w1 - w0),
        slots=sum(1 for slot in nominal if w0 <= slot < w1),
        lateness=Spread.of(late),
        end_to_end=Spread.of(end_to_end),
        claim=Spread.of(claim),
        queue_delay=Spread.of(queue),
        duplicates=int(records["duplicates"]),
        by_kind={names.get(k, k): Spread.of(v) for k, v in sorted(per_kind.items())},
    )


@dataclass
class Row:
    """One line of the results table."""

    system: str
    size: int
    schedule: str
    offered: float
    measured: Measured | None
    implied: int | None = None
    rss_mib: float | None = None
    db_mib: float | None = None
    cpu: str = ""
    notes: list[str] = field(default_factory=list)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, fmt)


def table(rows: list[Row]) -> str:
    """The results as a fixed-width table (lateness columns are p50 / p99 / max in ms)."""
    header = (
        f"{'system':<14}{'N':>10}  {'schedules':<30}{'offered/s':>10}{'fires/s':>9}  "
        f"{'fire lateness ms p50/p99/max':<30}{'queue ms p50/p99/max':<24}{'end to end ms p50/p99/max':<28}"
        f"{'claim ms p50/p99/max':<24}"
        f"{'slots':>8}{'RSS MiB':>9}{'DB MiB':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        m = row.measured
        slots = "-" if m is None else (f"{m.slots}" if row.implied is None else f"{m.slots}/{row.implied}")
        lines.append(
            f"{row.system:<14}{row.size:>10,}  {row.schedule:<30}{row.offered:>10.0f}"
            f"{_num(m.fires_per_s if m else None, '.0f'):>9}  "
            f"{(m.lateness.text() if m else '-'):<30}{(m.queue_delay.text() if m else '-'):<24}"
            f"{(m.end_to_end.text() if m else '-'):<28}{(m.claim.text() if m else '-'):<24}{slots:>8}"
            f"{_num(row.rss_mib, '.0f'):>9}{_num(row.db_mib, '.0f'):>8}"
        )
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    """Per-row extras: lateness by schedule kind, duplicates, CPU, notes."""
    lines: list[str] = []
    for row in rows:
        m = row.measured
        parts: list[str] = []
        if m is not None:
            parts += [f"{kind} fire lateness {spread.text()} ms" for kind, spread in m.by_kind.items()]
            parts.append(f"duplicate messages {m.duplicates}")
        if row.cpu:
            parts.append(row.cpu)
        parts += row.notes
        lines.append(f"  {row.system} N={row.size:,}: " + "; ".join(parts))
    return "\n".join(lines)
