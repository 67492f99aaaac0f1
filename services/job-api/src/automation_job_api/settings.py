"""job-api settings: the shared ``AUTOMATION_*`` base plus the service's own knobs."""

from __future__ import annotations

from pydantic import Field

from automation_core.settings import ServiceSettings


class JobApiSettings(ServiceSettings):
    """Configuration of job-api (environment variables ``AUTOMATION_*``).

    Own knobs:

    - ``AUTOMATION_JOBS_GAUGE_REFRESH_SECONDS`` (30): how often the ``automation_jobs`` gauge is
      recounted from the database (it is also recounted right after every job change).
    - ``AUTOMATION_EXECUTION_EVENTS_PREFETCH`` (unset: ``AUTOMATION_AMQP_PREFETCH``): unacknowledged
      execution events in flight on ``job-api.execution-events``.
    - ``AUTOMATION_LOG_FOLLOW_HEARTBEAT_SECONDS`` (15): a comment frame is sent on a followed log
      (``/logs?follow=true``) when nothing else was sent for this long.
    - ``AUTOMATION_LOG_FOLLOW_POLL_SECONDS`` (2): a followed log re-reads the database at least this
      often, also when no notification arrives (notifications wake it at once).
    - ``AUTOMATION_LOG_FOLLOW_END_GRACE_SECONDS`` (0.5): after the execution ends, how long late log
      batches are still awaited before ``event: end``.
    - ``AUTOMATION_DEAD_LETTERS_CONSUME`` (true): move messages from ``automation.dead`` into the
      ``dead_letters`` table (turn off to leave them in the queue).
    - ``AUTOMATION_DEAD_LETTERS_PREFETCH`` (20): unacknowledged dead letters in flight.
    - ``AUTOMATION_DEAD_LETTERS_RETRY_MAX_SECONDS`` (30): cap of the backoff before a dead letter
      that could not be stored is requeued.
    - ``AUTOMATION_DEAD_LETTERS_GAUGE_REFRESH_SECONDS`` (30): how often ``automation_dead_letters_stored``
      is recounted (also right after every change).
    """

    service_name: str = "job-api"
    http_port: int = Field(default=8000, ge=1, le=65535)
    jobs_gauge_refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
    execution_events_prefetch: int | None = Field(default=None, ge=1, le=10_000)
    log_follow_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    log_follow_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    log_follow_end_grace_seconds: float = Field(default=0.5, ge=0, le=30)
    dead_letters_consume: bool = True
    dead_letters_prefetch: int = Field(default=20, ge=1, le=10_000)
    dead_letters_retry_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    dead_letters_gauge_refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
