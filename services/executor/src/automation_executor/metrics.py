"""The executor's domain metrics (the process-wide Prometheus registry; labels never carry ids).

- ``automation_executor_executions_total{outcome}``: attempts that ended, by outcome: ``succeeded``,
  ``failed``, ``timed_out``, ``cancelled`` and ``lost`` (its lease expired; counted by the replica
  that recorded it).
- ``automation_executor_execution_duration_seconds``: wall-clock time of one run of an attempt (child
  process start to its end), histogram.
- ``automation_executor_queue_wait_seconds``: from the request's ``requested_at`` to the attempt's
  start, histogram (a retry is requested for the moment its backoff ends; reruns of handed-back
  attempts are left out).
- ``automation_executor_running_executions``: executions this replica is handling now, gauge.
- ``automation_executor_pool_utilization_ratio``: running executions / concurrency, gauge.
- ``automation_executor_retries_total``: retries scheduled through the delay queues (after failures
  and lost attempts).
- ``automation_executor_dead_letters_total{reason}``: run requests sent to ``automation.dead`` by this
  executor: ``final_failure`` (the last attempt failed), ``poison`` (killed its executor
  ``AUTOMATION_EXECUTOR_MAX_LOST`` times), ``invalid_request`` (a ``run.requested`` or
  ``execution.cancel`` whose data cannot be read).
- ``automation_executor_lost_attempts_total``: attempts recorded ``lost`` (lease expired).
- ``automation_executor_cancellations_total{stage}``: cancellations carried out: ``running`` (a run
  stopped) or ``before_start`` (a request dropped when it arrived).
- ``automation_executor_throttled_total``: run requests put back for a second because their job runs
  ``max_concurrency`` attempts already (not counted as attempts).
- ``automation_executor_lease_renewal_failures_total``: heartbeats that could not renew this replica's
  leases (database errors), plus leases found taken over (the run is then stopped).
- ``automation_executor_child_launch_seconds{launcher}``: time to get an execution's child process
  started, by ``forkserver`` or ``spawn`` (the spawned interpreter's own imports come after this);
  ``command-server``: a command of a job without a child, started by the command server.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
LAUNCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
OUTCOMES = ("succeeded", "failed", "timed_out", "cancelled", "lost")
DEAD_LETTER_REASONS = ("final_failure", "poison", "invalid_request")
CANCEL_STAGES = ("running", "before_start")

EXECUTIONS = Counter("automation_executor_executions", "Attempts that ended, by outcome.", ["outcome"])
EXECUTION_DURATION = Histogram(
    "automation_executor_execution_duration_seconds", "Wall-clock time of one attempt.", buckets=DURATION_BUCKETS
)
RUNNING = Gauge("automation_executor_running_executions", "Executions this replica is handling now.")
QUEUE_WAIT = Histogram(
    "automation_executor_queue_wait_seconds", "From requested_at to the attempt's start.", buckets=WAIT_BUCKETS
)
RETRIES = Counter("automation_executor_retries", "Retries scheduled through the delay queues.")
POOL_UTILIZATION = Gauge("automation_executor_pool_utilization_ratio", "Running executions / concurrency.")
DEAD_LETTERS = Counter(
    "automation_executor_dead_letters", "Run requests sent to automation.dead, by reason.", ["reason"]
)
LOST_ATTEMPTS = Counter("automation_executor_lost_attempts", "Attempts recorded lost (lease expired).")
CANCELLATIONS = Counter("automation_executor_cancellations", "Cancellations carried out, by stage.", ["stage"])
THROTTLED = Counter("automation_executor_throttled", "Run requests put back because their job is at max_concurrency.")
LEASE_RENEWAL_FAILURES = Counter(
    "automation_executor_lease_renewal_failures", "Heartbeats that failed, and leases found taken over."
)
CHILD_LAUNCH = Histogram(
    "automation_executor_child_launch_seconds",
    "Time to start an execution's child, or a command of a job without one.",
    ["launcher"],
    buckets=LAUNCH_BUCKETS,
)

for _outcome in OUTCOMES:
    EXECUTIONS.labels(_outcome)
for _reason in DEAD_LETTER_REASONS:
    DEAD_LETTERS.labels(_reason)
for _stage in CANCEL_STAGES:
    CANCELLATIONS.labels(_stage)
