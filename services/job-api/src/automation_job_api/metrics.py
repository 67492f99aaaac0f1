"""job-api's domain metrics (the HTTP, consumer and outbox metrics come from automation_core).

- ``automation_jobs{state}``: jobs by state (``enabled``/``disabled``), all accounts together;
  recounted after every job change and every ``AUTOMATION_JOBS_GAUGE_REFRESH_SECONDS``.
- ``automation_executions_recorded_total{status}``: execution status changes recorded in the read
  model (a manual run's ``queued`` row included), by the status recorded.
- ``automation_api_keys_issued_total``: API keys issued (with a new account or on request).
- ``automation_execution_cancels_requested_total``: accepted ``POST /executions/{id}/cancel`` calls.
- ``automation_log_follow_streams``: followed logs (server-sent event streams) open now.
- ``automation_dead_letters_total{original_queue}``: dead letters moved from ``automation.dead`` into
  the ``dead_letters`` table (a redelivered one is not counted twice).
- ``automation_dead_letters_stored{original_queue}``: dead letters in the table now; recounted after
  every change and every ``AUTOMATION_DEAD_LETTERS_GAUGE_REFRESH_SECONDS``.
- ``automation_dead_letters_requeued_total``: dead letters re-published to their original destination.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

JOBS = Gauge("automation_jobs", "Jobs by state (enabled or disabled).", ["state"])
EXECUTIONS_RECORDED = Counter(
    "automation_executions_recorded", "Execution status changes recorded in the read model.", ["status"]
)
API_KEYS_ISSUED = Counter("automation_api_keys_issued", "API keys issued.")
CANCELS_REQUESTED = Counter("automation_execution_cancels_requested", "Execution cancellations requested.")
LOG_FOLLOW_STREAMS = Gauge("automation_log_follow_streams", "Followed execution logs (SSE streams) open now.")
DEAD_LETTERS = Counter(
    "automation_dead_letters", "Dead letters stored from automation.dead, by original queue.", ["original_queue"]
)
DEAD_LETTERS_STORED = Gauge(
    "automation_dead_letters_stored", "Dead letters in the dead_letters table, by original queue.", ["original_queue"]
)
DEAD_LETTERS_REQUEUED = Counter("automation_dead_letters_requeued", "Dead letters re-published to their destination.")


def set_job_counts(enabled: int, disabled: int) -> None:
    """Publish the current job counts."""
    JOBS.labels("enabled").set(enabled)
    JOBS.labels("disabled").set(disabled)


def set_dead_letter_counts(counts: Mapping[str, int]) -> None:
    """Publish the stored dead letters per original queue (queues with none left drop to 0)."""
    for queue in _STORED_QUEUES - counts.keys():
        DEAD_LETTERS_STORED.labels(queue).set(0)
    for queue, count in counts.items():
        DEAD_LETTERS_STORED.labels(queue).set(count)
    _STORED_QUEUES.update(counts)


_STORED_QUEUES: set[str] = set()
