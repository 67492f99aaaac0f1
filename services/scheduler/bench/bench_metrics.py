"""The scheduler's own ``/metrics`` read at the window's start and end, for the bottleneck figures.

From the two scrapes: fires committed and messages published by the outbox relay (the difference
piles up in the outbox), fire-loop rounds (``automation_scheduler_fire_batch_seconds`` count and sum) and
fires per round, and the publish lateness the scheduler itself observes
(``automation_scheduler_fire_lateness_seconds``, as the upper bound of the histogram bucket that holds
the quantile). A metric the scheduler no longer exposes is reported as missing, not guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

Sample = tuple[str, frozenset[tuple[str, str]]]
FIRES = "automation_scheduler_fires_total"
BATCH = "automation_scheduler_fire_batch_seconds"
LATENESS = "automation_scheduler_fire_lateness_seconds"
PUBLISHED = "automation_messages_published_total"
PENDING = "automation_outbox_pending_messages"


def parse(text: str) -> dict[Sample, float]:
    """Prometheus text exposition into ``{(name, labels): value}``."""
    samples: dict[Sample, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: set[tuple[str, str]] = set()
        for pair in filter(None, rest.rstrip("}").split(",")):
            key, _, quoted = pair.partition("=")
            labels.add((key, quoted.strip('"')))
        try:
            samples[(name, frozenset(labels))] = float(value)
        except ValueError:
            continue
    return samples


async def scrape(url: str) -> dict[Sample, float]:
    async with httpx.AsyncClient(timeout=5) as http:
        return parse((await http.get(f"{url}/metrics")).text)


def total(samples: dict[Sample, float], name: str) -> float | None:
    """The sum of every series of ``name`` (None when absent)."""
    values = [v for (n, _), v in samples.items() if n == name]
    return sum(values) if values else None


def bucket_quantile(before: dict[Sample, float], after: dict[Sample, float], name: str, q: float) -> float | None:
    """Upper bound (seconds) of the bucket holding quantile ``q`` of the observations between two scrapes."""
    buckets: dict[float, float] = {}
    for (n, labels), value in after.items():
        if n != f"{name}_bucket":
            continue
        le = dict(labels).get("le", "+Inf")
        bound = math.inf if le == "+Inf" else float(le)
        buckets[bound] = buckets.get(bound, 0.0) + value - before.get((n, labels), 0.0)
    if not buckets or buckets.get(math.inf, 0.0) <= 0:
        return None
    count = buckets[math.inf]
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return bound
    return math.inf


@dataclass(frozen=True, slots=True)
class LoopFigures:
    """The fire loop over the window, from its own metrics."""

    fires: float | None
    published: float | None
    pending: float | None
    """Outbox rows not yet published at the window's end (the relay's gauge)."""
    rounds: float | None
    round_seconds: float | None
    commit_p50: float | None
    commit_p99: float | None

    @classmethod
    def between(cls, before: dict[Sample, float], after: dict[Sample, float]) -> LoopFigures:
        def delta(name: str) -> float | None:
            a, b = total(after, name), total(before, name)
            return None if a is None else a - (b or 0.0)

        return cls(
            fires=delta(FIRES),
            published=delta(PUBLISHED),
            pending=total(after, PENDING),
            rounds=delta(f"{BATCH}_count"),
            round_seconds=delta(f"{BATCH}_sum"),
            commit_p50=bucket_quantile(before, after, LATENESS, 0.5),
            commit_p99=bucket_quantile(before, after, LATENESS, 0.99),
        )

    def text(self, window: float, cpu_percent: float) -> str:
        parts: list[str] = []
        if self.rounds:
            parts.append(f"fire loop {self.rounds / window:.0f} rounds/s")
            if self.fires is not None:
                parts.append(f"{self.fires / self.rounds:.1f} fires/round")
            if self.round_seconds is not None:
                parts.append(f"{self.round_seconds / self.rounds * 1000:.2f} ms/round")
        if self.fires is not None:
            parts.append(f"fire loop committed {self.fires / window:.0f} fires/s")
        if self.published is not None:
            parts.append(f"published {self.published / window:.0f} messages/s (dispatcher and relay)")
        if self.pending is not None:
            parts.append(f"outbox {self.pending:.0f} rows at the end (held for their lease or unpublished)")
        if self.fires:
            per_fire = cpu_percent / 100 * window / self.fires * 1000
            parts.append(f"scheduler CPU {per_fire:.3f} ms/fire (one full core: ~{1000 / per_fire:.0f} fires/s)")
        if self.commit_p99 is not None:
            p50 = "-" if self.commit_p50 is None else f"{self.commit_p50 * 1000:g}"
            parts.append(f"publish lateness (own histogram) p50 <= {p50} ms, p99 <= {self.commit_p99 * 1000:g} ms")
        return "; ".join(parts) or "scheduler metrics unavailable"
