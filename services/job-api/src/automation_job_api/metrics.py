"""job-api's domain metrics (the HTTP, consumer and outbox metrics come from automation_core).

- ``automation_jobs{state}``: jobs by state (``enabled``/``disabled``), all accounts together;
  recounted after every job change and every ``AUTOMATION_JOBS_GAUGE_REFRESH_SECONDS``.
- ``automation_executions_recorded_total{status}``: execution status changes recorded in the read
  model (a manual run's ``queued`` row included), by the status recorded.
- ``automation_api_keys_issued_total``: API keys issued (with a new account or on request).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

JOBS = Gauge("automation_jobs", "Jobs by state (enabled or disabled).", ["state"])
EXECUTIONS_RECORDED = Counter(
    "automation_executions_recorded", "Execution status changes recorded in the read model.", ["status"]
)
API_KEYS_ISSUED = Counter("automation_api_keys_issued", "API keys issued.")


def set_job_counts(enabled: int, disabled: int) -> None:
    """Publish the current job counts."""
    JOBS.labels("enabled").set(enabled)
    JOBS.labels("disabled").set(disabled)
