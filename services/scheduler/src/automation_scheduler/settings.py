"""Settings of the scheduler (environment variables ``AUTOMATION_*``)."""

from __future__ import annotations

from pydantic import Field

from automation_core.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    """The shared settings plus the fire loop's knobs.

    - ``AUTOMATION_SCHEDULER_BATCH_SIZE``: due schedules claimed per fire transaction.
    - ``AUTOMATION_SCHEDULER_MAX_SLEEP_SECONDS``: longest the fire loop sleeps without looking at the
      table (a safety net: it normally wakes at the earliest due time or on a change notification).
    - ``AUTOMATION_SCHEDULER_MAX_MISSED_RECORDS``: missed slots recorded one by one per schedule and fire
      after downtime; older ones beyond this are logged as truncated, not recorded.
    - ``AUTOMATION_SCHEDULER_CACHE_SIZE``: parsed schedules kept in memory (least recently used evicted).
    - ``AUTOMATION_SCHEDULER_STATS_INTERVAL_SECONDS``: how often the schedules-by-state gauge is sampled.
    """

    service_name: str = "scheduler"
    http_port: int = Field(default=8001, ge=1, le=65535)
    scheduler_batch_size: int = Field(default=500, ge=1, le=10_000)
    scheduler_max_sleep_seconds: float = Field(default=30.0, gt=0, le=3600)
    scheduler_max_missed_records: int = Field(default=1000, ge=0, le=1_000_000)
    scheduler_cache_size: int = Field(default=100_000, ge=1, le=10_000_000)
    scheduler_stats_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
