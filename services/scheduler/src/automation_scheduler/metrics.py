"""The scheduler's domain metrics (process-wide Prometheus registry).

- ``automation_scheduler_fires_total{trigger}``: runs requested by the fire loop (``trigger``: ``schedule``).
- ``automation_scheduler_fire_lateness_seconds``: commit time of a fire minus its nominal time.
- ``automation_scheduler_misfires_total{reason}``: nominal slots that did not fire (``missed``: coalesced
  after downtime; ``unrecorded``: missed beyond the per-fire record limit, counted once per truncated
  fire; ``invalid_schedule``: a stored schedule that no longer parses, stopped).
- ``automation_scheduler_due_backlog``: active schedules due but not yet fired, sampled each loop.
- ``automation_scheduler_schedules{state}``: schedule rows by state, sampled periodically.
- ``automation_scheduler_fire_batch_seconds``: time of one claim-and-fire transaction.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENESS_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

FIRES = Counter("automation_scheduler_fires", "Runs requested by the fire loop.", ["trigger"])
FIRE_LATENESS = Histogram(
    "automation_scheduler_fire_lateness_seconds",
    "Commit time of a fire minus its nominal time.",
    buckets=LATENESS_BUCKETS,
)
MISFIRES = Counter("automation_scheduler_misfires", "Nominal slots that did not fire, by reason.", ["reason"])
DUE_BACKLOG = Gauge("automation_scheduler_due_backlog", "Active schedules due but not yet fired.")
SCHEDULES = Gauge("automation_scheduler_schedules", "Schedule rows by state.", ["state"])
FIRE_BATCH_DURATION = Histogram(
    "automation_scheduler_fire_batch_seconds",
    "Time of one claim-and-fire transaction.",
    buckets=BATCH_BUCKETS,
)
