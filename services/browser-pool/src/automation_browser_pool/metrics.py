"""browser-pool's domain metrics (process-wide Prometheus registry; labels are outcomes, never ids).

- ``automation_browser_pool_browsers``: browsers in the pool that are connected.
- ``automation_browser_pool_busy_contexts``: task slots in use (one fresh browser context each).
- ``automation_browser_pool_capacity_contexts``: task slots the pool is configured for
  (browsers x contexts per browser).
- ``automation_browser_pool_wait_seconds``: time a task waited for a free slot.
- ``automation_browser_restarts_total{reason}``: browsers replaced (``crashed``: disconnected;
  ``recycled``: served ``AUTOMATION_BROWSER_RECYCLE_AFTER`` tasks). A launch that fails is not a
  restart: it is retried with a backoff and logged (``browser_launch_failed``).
- ``automation_browser_tasks_total{outcome}``: tasks answered (``ok`` or ``error``).
- ``automation_browser_tasks_received_again_total{found}``: tasks received again (a request
  delivered again, or sent again by its caller) and answered without running them twice:
  ``answered`` (its result was stored), ``running_here`` (it was running in this replica, which
  answered both with one run), ``running_elsewhere`` (another replica had claimed it: its result
  was waited for).
- ``automation_browser_tasks_expired_total``: tasks answered ``ok: false`` without being run,
  because their caller had stopped waiting before they could start.
- ``automation_browser_task_duration_seconds``: time from receiving a task to its result.
- ``automation_browser_artifacts_deleted_total``: artifacts removed by the retention cleanup.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

BROWSERS = Gauge("automation_browser_pool_browsers", "Connected browsers in the pool.")
BUSY_CONTEXTS = Gauge("automation_browser_pool_busy_contexts", "Task slots (browser contexts) in use.")
CAPACITY_CONTEXTS = Gauge(
    "automation_browser_pool_capacity_contexts", "Task slots the pool is configured for (browsers x contexts)."
)
POOL_WAIT = Histogram(
    "automation_browser_pool_wait_seconds", "Time a task waited for a free browser slot.", buckets=WAIT_BUCKETS
)
RESTARTS = Counter("automation_browser_restarts", "Browsers replaced, by reason.", ["reason"])
TASKS = Counter("automation_browser_tasks", "Browser tasks answered, by outcome.", ["outcome"])
RECEIVED_AGAIN = Counter(
    "automation_browser_tasks_received_again",
    "Browser tasks received again and answered without a second run, by what was found.",
    ["found"],
)
EXPIRED = Counter("automation_browser_tasks_expired", "Browser tasks not run because their caller had stopped waiting.")
TASK_DURATION = Histogram(
    "automation_browser_task_duration_seconds",
    "Time from receiving a browser task to its result.",
    buckets=TASK_BUCKETS,
)
ARTIFACTS_DELETED = Counter("automation_browser_artifacts_deleted", "Artifacts removed by the retention cleanup.")
