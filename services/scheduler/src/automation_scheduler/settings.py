"""Settings of the scheduler (environment variables ``AUTOMATION_*``)."""

from __future__ import annotations

from pydantic import Field

from automation_core.settings import EventLoopName, ServiceSettings


class SchedulerSettings(ServiceSettings):
    """The shared settings plus the fire loop's knobs.

    - ``AUTOMATION_SCHEDULER_BATCH_SIZE``: due schedules claimed per fire transaction.
    - ``AUTOMATION_SCHEDULER_MAX_SLEEP_SECONDS``: longest the fire loop sleeps without looking at the
      table (a safety net: it normally wakes at the earliest due time or on a change notification).
    - ``AUTOMATION_SCHEDULER_MAX_MISSED_RECORDS``: missed slots recorded one by one per schedule and fire
      after downtime; older ones beyond this are logged as truncated, not recorded.
    - ``AUTOMATION_SCHEDULER_CACHE_SIZE``: parsed schedules kept in memory (least recently used evicted).
    - ``AUTOMATION_SCHEDULER_STATS_INTERVAL_SECONDS``: how often the schedules-by-state gauge is sampled.
    - ``AUTOMATION_SCHEDULER_MISFIRE_THRESHOLD_SECONDS``: how late a due slot may be before it counts as
      misfired (what misfire policy ``skip`` skips).
    - ``AUTOMATION_SCHEDULER_FIRE_RETENTION_HOURS``: how long fire and event-fire records, finished
      backfills and running-state tombstones are kept.
    - ``AUTOMATION_SCHEDULER_CLEANUP_INTERVAL_SECONDS``: how often the retention cleanup runs.
    - ``AUTOMATION_SCHEDULER_RUNNING_GRACE_SECONDS``: how long past its timeout (and retry backoff) a run
      with no end event still counts as running for the overlap policy.
    - ``AUTOMATION_SCHEDULER_BACKFILL_MAX_SLOTS``: most runs one backfill may create.
    - ``AUTOMATION_SCHEDULER_BINDINGS_INTERVAL_SECONDS``: how often the trigger queue's bindings are
      reconciled with the triggers table besides after each change (a safety net).
    - ``AUTOMATION_SCHEDULER_LOOKAHEAD_MS``: how far ahead of its time a slot is claimed, decided and
      committed; its ``run.requested`` is then published from memory at the slot's time. 0 decides each
      slot when it is due (it is then published a round trip or so late).
    - ``AUTOMATION_SCHEDULER_FIRE_WORKERS``: fire-loop workers per process, each with its own database
      connection, claiming disjoint rows (one computes while another waits on the database).
    - ``AUTOMATION_SCHEDULER_DISPATCH_COALESCE_MS``: least time between two publish batches of the
      dispatcher; under a high rate, fires due meanwhile go out together (each at most this late).
    - ``AUTOMATION_SCHEDULER_PUBLISH_LEASE_SECONDS``: how long after its time a committed fire is left
      to the replica that decided it before any replica's outbox relay publishes it (the delay a fire
      suffers when its replica dies between the commit and the publish).
    - ``AUTOMATION_EVENT_LOOP`` defaults to ``asyncio`` here, not ``auto``: uvloop's clock and timers
      have millisecond resolution, and the dispatcher publishes each fire at its time to well under
      a millisecond.
    """

    service_name: str = "scheduler"
    http_port: int = Field(default=8001, ge=1, le=65535)
    scheduler_batch_size: int = Field(default=500, ge=1, le=10_000)
    scheduler_max_sleep_seconds: float = Field(default=30.0, gt=0, le=3600)
    scheduler_max_missed_records: int = Field(default=1000, ge=0, le=1_000_000)
    scheduler_cache_size: int = Field(default=100_000, ge=1, le=10_000_000)
    scheduler_stats_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    scheduler_misfire_threshold_seconds: float = Field(default=60.0, ge=0, le=86_400)
    scheduler_fire_retention_hours: float = Field(default=168.0, gt=0, le=87_600)
    scheduler_cleanup_interval_seconds: float = Field(default=600.0, gt=0, le=86_400)
    scheduler_running_grace_seconds: float = Field(default=300.0, ge=0, le=86_400)
    scheduler_backfill_max_slots: int = Field(default=10_000, ge=1, le=1_000_000)
    scheduler_bindings_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    scheduler_lookahead_ms: int = Field(default=500, ge=0, le=10_000)
    scheduler_fire_workers: int = Field(default=2, ge=1, le=8)
    scheduler_dispatch_coalesce_ms: float = Field(default=2.0, ge=0, le=100)
    scheduler_publish_lease_seconds: float = Field(default=5.0, ge=1.0, le=600)
    event_loop: EventLoopName = "asyncio"
