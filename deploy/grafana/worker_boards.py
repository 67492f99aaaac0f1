"""The worker dashboards: Executor and Browser pool (built by ``build_dashboards.py``)."""

from __future__ import annotations

from typing import Any

from panels import (
    RATE,
    RETRY_RUN_REQUESTS,
    Panel,
    Query,
    dashboard,
    handling_time,
    health,
    outbox,
    published,
    quantiles,
    queue_flow,
    row,
    timeseries,
)


def executor() -> dict[str, Any]:
    svc = "executor"
    panels: list[Panel] = [
        row("Executions"),
        timeseries(
            "Executions finished per minute by outcome",
            "Attempts that ended: succeeded, failed, timed_out, cancelled; lost = its lease expired (its "
            "executor vanished), counted by the replica that recorded it.",
            Query(f"sum by (outcome) (rate(automation_executor_executions_total{RATE})) * 60", "{{outcome}}"),
            stacked=True,
        ),
        timeseries(
            "Failure ratio",
            "Failed or timed-out attempts over all finished attempts (ExecutionsFailing above 25%).",
            Query(
                f'sum(rate(automation_executor_executions_total{{outcome=~"failed|timed_out"}}{RATE})) '
                f"/ sum(rate(automation_executor_executions_total{RATE}))",
                "failed or timed out",
            ),
            unit="percentunit",
        ),
        timeseries(
            "Retries per minute",
            "Retries scheduled through the delay queues (after a failure or a lost attempt, with retries left).",
            Query(f"sum(rate(automation_executor_retries_total{RATE})) * 60", "retries"),
        ),
        timeseries(
            "Execution duration",
            "Wall-clock time of one run of an attempt (child process start to end).",
            *quantiles("automation_executor_execution_duration_seconds"),
            unit="s",
        ),
        timeseries(
            "Queue wait",
            "From a run's requested_at to its attempt's start: time in executor.runs (and, for a "
            "retry, after its backoff). Growing: add executors.",
            *quantiles("automation_executor_queue_wait_seconds"),
            unit="s",
        ),
        timeseries(
            "Recorded by job-api by status",
            "Execution status changes job-api recorded from execution events; they should follow the "
            "executor's outcomes (a gap: job-api is not consuming execution events).",
            Query(f"sum by (status) (rate(automation_executions_recorded_total{RATE})) * 60", "{{status}}"),
        ),
        row("Failures and recovery"),
        timeseries(
            "Dead-lettered run requests per minute",
            "Requests the executor sent to automation.dead: final_failure (the last attempt failed), "
            "poison (killed its executor too often), invalid_request (unreadable data). DeadLettersGrowing.",
            Query(f"sum by (reason) (rate(automation_executor_dead_letters_total{RATE})) * 60", "{{reason}}"),
            width=6,
        ),
        timeseries(
            "Lost attempts and lease trouble",
            "Attempts recorded lost (lease expired: an executor died or stalled), and heartbeats that could "
            "not renew leases or found them taken over. Both at once: database trouble or overloaded replicas.",
            Query(f"sum(rate(automation_executor_lost_attempts_total{RATE})) * 60", "lost attempts/min"),
            Query(f"sum(rate(automation_executor_lease_renewal_failures_total{RATE})) * 60", "lease failures/min"),
            width=6,
        ),
        timeseries(
            "Cancellations per minute",
            "Cancels accepted by job-api, and those the executors carried out: running (a run stopped) or "
            "before_start (a request dropped on arrival).",
            Query(f"sum(rate(automation_execution_cancels_requested_total{RATE})) * 60", "requested (job-api)"),
            Query(f"sum by (stage) (rate(automation_executor_cancellations_total{RATE})) * 60", "{{stage}}"),
            width=6,
        ),
        timeseries(
            "Throttled per minute",
            "Run requests put back for a second because their job already runs max_concurrency attempts "
            "(not attempts, not failures).",
            Query(f"sum(rate(automation_executor_throttled_total{RATE})) * 60", "throttled"),
            width=6,
        ),
        row("Capacity"),
        timeseries(
            "Running executions per replica",
            "Executions each replica is handling now.",
            Query("sum by (instance) (automation_executor_running_executions)", "{{instance}}"),
            width=6,
            stacked=True,
        ),
        timeseries(
            "Pool utilization per replica",
            "Running executions / concurrency per replica; KEDA adds replicas on queue depth.",
            Query("max by (instance) (automation_executor_pool_utilization_ratio)", "{{instance}}"),
            unit="percentunit",
            width=6,
        ),
        timeseries(
            "Child launch time p95",
            "Time to get an execution's child process started, by launcher (forkserver or spawn).",
            Query(
                "histogram_quantile(0.95, sum by (le, launcher) "
                f"(rate(automation_executor_child_launch_seconds_bucket{RATE})))",
                "{{launcher}}",
            ),
            unit="s",
            width=6,
        ),
        timeseries(
            "Followed logs open (job-api)",
            "Server-sent event streams following an execution's log, per job-api replica.",
            Query("sum by (instance) (automation_log_follow_streams)", "{{instance}}"),
            width=6,
            stacked=True,
        ),
        row("Queue executor.runs"),
        queue_flow(svc, "executor.runs", published_key="run.requested", delayed=RETRY_RUN_REQUESTS),
        handling_time(svc),
        row("Plumbing"),
        health(svc),
        outbox(svc),
        published(svc),
    ]
    return dashboard(
        "automation-executor",
        "Automation Platform / Executor",
        "What is failing and how busy the workers are: outcomes, durations, queue wait, retries, dead "
        "letters, leases, cancellations, capacity and the executor.runs queue.",
        panels,
        [],
    )


def browser_pool() -> dict[str, Any]:
    svc = "browser-pool"
    panels: list[Panel] = [
        row("Pool"),
        timeseries(
            "Browsers",
            "Connected browsers per replica.",
            Query("sum by (instance) (automation_browser_pool_browsers)", "{{instance}}"),
            stacked=True,
        ),
        timeseries(
            "Busy contexts and capacity",
            "Task slots (one fresh browser context per task) in use, against the configured capacity "
            "(browsers x contexts per browser), over all replicas.",
            Query("sum(automation_browser_pool_busy_contexts)", "busy"),
            Query("sum(automation_browser_pool_capacity_contexts)", "capacity"),
        ),
        timeseries(
            "Utilization per replica",
            "Busy contexts / capacity per replica. At 100%, tasks wait for a slot.",
            Query(
                "sum by (instance) (automation_browser_pool_busy_contexts) "
                "/ sum by (instance) (automation_browser_pool_capacity_contexts)",
                "{{instance}}",
            ),
            unit="percentunit",
        ),
        timeseries(
            "Wait for a slot",
            "Time a task waited for a free browser context.",
            *quantiles("automation_browser_pool_wait_seconds"),
            unit="s",
        ),
        timeseries(
            "Browser restarts per hour by reason",
            "Browsers replaced: crashed (disconnected), recycled (served their task quota). Crashes in "
            "numbers: memory or /dev/shm. A launch that fails is not a restart: it is retried with a "
            "backoff and logged (browser_launch_failed), and the Browsers panel stays below the pool size.",
            Query(f"sum by (reason) (rate(automation_browser_restarts_total{RATE})) * 3600", "{{reason}}"),
        ),
        timeseries(
            "Artifacts deleted per hour",
            "Screenshots and PDFs removed by the retention cleanup.",
            Query(f"sum(rate(automation_browser_artifacts_deleted_total{RATE})) * 3600", "deleted"),
        ),
        row("Tasks"),
        timeseries(
            "Tasks per minute by outcome",
            "Browser tasks answered: ok, or error (a failed action, navigation or timeout; the reply "
            "carries the reason).",
            Query(f"sum by (outcome) (rate(automation_browser_tasks_total{RATE})) * 60", "{{outcome}}"),
            stacked=True,
        ),
        timeseries(
            "Task time",
            "From receiving a task to its result.",
            *quantiles("automation_browser_task_duration_seconds"),
            unit="s",
        ),
        timeseries(
            "Tasks received again per hour",
            "Tasks that arrived again and were answered without a second run: answered (its result was "
            "stored), running_here (joined its run in this replica), running_elsewhere (another replica's "
            "claim). Bursts follow broker restarts and dropped connections.",
            Query(f"sum by (found) (rate(automation_browser_tasks_received_again_total{RATE})) * 3600", "{{found}}"),
        ),
        timeseries(
            "Tasks not run, their caller gone, per hour",
            "Tasks answered 'not run' because they waited in browser-pool.tasks longer than their caller "
            "(their timeout + 15 s): browser-pool was down or saturated. Alert: BrowserTasksExpiring.",
            Query(f"sum(rate(automation_browser_tasks_expired_total{RATE})) * 3600", "expired"),
        ),
        queue_flow(svc, "browser-pool.tasks", published_key="browser.task", width=8),
        row("Plumbing"),
        health(svc),
        handling_time(svc, width=9),
        published(svc, width=9),
    ]
    return dashboard(
        "automation-browser-pool",
        "Automation Platform / Browser pool",
        "Chromium pool: browsers, contexts and capacity, waits, restarts, tasks and the browser-pool.tasks queue.",
        panels,
        [],
    )
