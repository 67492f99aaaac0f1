"""One measured scenario, whichever system ran it, and how it reads in the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench_common import Latency, Published, fmt_ms, mib


@dataclass(frozen=True, slots=True)
class Scenario:
    """What is offered: ``count`` requests at ``rate`` per second (None: as fast as possible)."""

    count: int
    rate: float | None

    @property
    def label(self) -> str:
        return "max" if self.rate is None else f"{self.rate:g}/s"


@dataclass
class Result:
    """What one system did with one scenario."""

    system: str
    """``ours (shell true)``, ``celery prefork x2`` ..."""
    scenario: Scenario
    published: Published
    done: int
    """Requests whose outcome is recorded (ours: in job-api's read model; Celery: the task body ran, or with
    history its ``SUCCESS`` row; the bare minimum: its row ``succeeded``)."""
    last_done: float
    """Epoch seconds of the last outcome recorded."""
    start: Latency
    """Request -> start (ours: the attempt's ``started_at``; Celery: the task body's first line)."""
    rss_peak: int
    pss_peak: int
    durable: bool
    """Whether every outcome is in a durable record (ours: job-api's read model; Celery: its result backend)."""
    peer: bool = False
    """A peer's figure (Celery, the bare minimum), which ours is compared with."""
    floor: bool = False
    """The bare minimum's figure: what the issue's guarantees cost done the simplest way, not a peer to beat."""
    steps: str | None = None
    """The job kind (``shell``, ``python``) of ours and the bare minimum; ratios pair them by kind."""
    extra_latency: dict[str, Latency] = field(default_factory=dict)
    cpu_ms_per_run: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timed_out: bool = False
    failed: int = 0
    """Outcomes recorded that are not a success."""

    @property
    def runs_per_second(self) -> float:
        """Outcomes per second, from the first publish to the last outcome recorded."""
        span = self.last_done - self.published.first
        return self.done / span if self.done and span > 0 else math.nan

    def row(self) -> list[str]:
        complete = f"{self.done}/{self.scenario.count}" + (" (time limit)" if self.timed_out else "")
        complete += f" ({self.failed} failed)" if self.failed else ""
        return [
            self.system,
            self.scenario.label,
            f"{self.published.rate:.0f}",
            complete,
            f"{self.runs_per_second:.1f}",
            fmt_ms(self.start.p50),
            fmt_ms(self.start.p99),
            mib(self.rss_peak),
            mib(self.pss_peak),
            "yes" if self.durable else "no",
        ]


HEADER = [
    "system",
    "offered",
    "sent/s",
    "done",
    "runs/s",
    "start p50",
    "start p99",
    "RSS peak",
    "PSS peak",
    "durable history",
]


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table with aligned columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def ratio(ours: float, theirs: float) -> str:
    """``ours / theirs`` for a table cell."""
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "-"
    return f"{ours / theirs:.3g}x"
