"""The executor's domain metrics (the process-wide Prometheus registry; labels never carry ids).

- ``automation_executor_executions_total{outcome}``: attempts run to an end, by outcome (``succeeded``,
  ``failed``, ``timed_out``), plus ``lost``: attempts found still running on redelivery (their executor
  vanished) and run again.
- ``automation_executor_execution_duration_seconds``: wall-clock time of one attempt's run (child process
  start to its end), histogram.
- ``automation_executor_running_executions``: executions this replica is handling now, gauge.
- ``automation_executor_queue_wait_seconds``: from the request's ``requested_at`` to the attempt's start,
  histogram (a retry is requested for the moment its backoff ends; reruns of lost attempts are left out).
- ``automation_executor_retries_total``: retries scheduled through the delay queues.
- ``automation_executor_pool_utilization_ratio``: running executions / concurrency, gauge.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

EXECUTIONS = Counter("automation_executor_executions", "Attempts run to an end, by outcome.", ["outcome"])
EXECUTION_DURATION = Histogram(
    "automation_executor_execution_duration_seconds", "Wall-clock time of one attempt.", buckets=DURATION_BUCKETS
)
RUNNING = Gauge("automation_executor_running_executions", "Executions this replica is handling now.")
QUEUE_WAIT = Histogram(
    "automation_executor_queue_wait_seconds", "From requested_at to the attempt's start.", buckets=WAIT_BUCKETS
)
RETRIES = Counter("automation_executor_retries", "Retries scheduled through the delay queues.")
POOL_UTILIZATION = Gauge("automation_executor_pool_utilization_ratio", "Running executions / concurrency.")
