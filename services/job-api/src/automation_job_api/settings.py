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
    """

    service_name: str = "job-api"
    http_port: int = Field(default=8000, ge=1, le=65535)
    jobs_gauge_refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
    execution_events_prefetch: int | None = Field(default=None, ge=1, le=10_000)
