"""The scheduler's domain metrics (process-wide Prometheus registry).

- ``automation_scheduler_fires_total{trigger}``: runs requested (``trigger``: ``schedule``, ``event``,
  ``backfill``; a backfill run counts when it is released).
- ``automation_scheduler_fire_outcomes_total{outcome}``: nominal slots recorded, by outcome (``fired``,
  ``skipped``, ``missed``, ``coalesced``, ``paused``, ``dropped``, ``backfill``).
- ``automation_scheduler_fire_lateness_seconds``: publish time of a scheduled fire's ``run.requested``
  minus its due time (the nominal time plus the job's jitter), taken as the dispatcher sends it.
- ``automation_scheduler_misfires_total{reason}``: nominal slots that did not fire: ``missed`` and
  ``coalesced`` (after downtime), ``dropped`` (starting deadline), ``unrecorded`` (slots left out of the
  record after a long downtime, counted once per schedule and round), ``invalid_schedule`` (a stored
  schedule that no longer parses, stopped).
- ``automation_scheduler_dropped_fires_total``: fires dropped by their starting deadline.
- ``automation_scheduler_event_triggers_total{outcome}``: trigger events by what they did to a job
  (``fired``, ``skipped``, ``rate_limited``, ``duplicate``), ``unmatched`` (no job matched) or
  ``filtered`` (a platform event dropped by routing key, unread).
- ``automation_scheduler_cancels_total``: ``execution.cancel`` sent by the ``replace`` overlap policy.
- ``automation_scheduler_due_backlog``: active schedules due but not yet fired, sampled each loop.
- ``automation_scheduler_schedules{state}``: schedule rows by state, sampled periodically.
- ``automation_scheduler_running_executions``: executions the overlap policy sees running, sampled.
- ``automation_scheduler_fire_batch_seconds``: time of one claim-and-fire transaction.
- ``automation_scheduler_cleanup_deleted_total{table}``: rows removed by the retention cleanup.
- ``automation_scheduler_dispatch_pending``: committed fires waiting in memory for their time.
- ``automation_scheduler_dispatch_left_total{reason}``: committed fires the dispatcher left to the outbox
  relays (``error``: the publish failed; ``lease``: it got to them too late), published after the lease.
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

FIRES = Counter("automation_scheduler_fires", "Runs requested, by trigger.", ["trigger"])
FIRE_OUTCOMES = Counter("automation_scheduler_fire_outcomes", "Nominal slots recorded, by outcome.", ["outcome"])
DROPPED_FIRES = Counter("automation_scheduler_dropped_fires", "Fires dropped by their starting deadline.")
EVENT_TRIGGERS = Counter(
    "automation_scheduler_event_triggers", "Trigger events by what they did to a job.", ["outcome"]
)
CANCELS = Counter("automation_scheduler_cancels", "execution.cancel sent by the replace overlap policy.")
RUNNING = Gauge("automation_scheduler_running_executions", "Executions the overlap policy sees running.")
CLEANUP_DELETED = Counter("automation_scheduler_cleanup_deleted", "Rows removed by the retention cleanup.", ["table"])
FIRE_LATENESS = Histogram(
    "automation_scheduler_fire_lateness_seconds",
    "Publish time of a scheduled fire minus its due time.",
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
DISPATCH_PENDING = Gauge("automation_scheduler_dispatch_pending", "Committed fires waiting for their time.")
DISPATCH_LEFT = Counter(
    "automation_scheduler_dispatch_left", "Committed fires left to the outbox relays, by reason.", ["reason"]
)
