"""The platform-wide dashboards: Overview, Scheduler and Events (built by ``build_dashboards.py``)."""

from __future__ import annotations

from typing import Any

from panels import (
    PROBE_ROUTES,
    RATE,
    SERVICES,
    Panel,
    Query,
    dashboard,
    db_pools,
    handling_time,
    health,
    http_latency,
    http_requests,
    outbox,
    published,
    quantiles,
    queue_flow,
    row,
    service_variable,
    stat,
    table,
    timeseries,
)


def overview() -> dict[str, Any]:
    jobs = "|".join(SERVICES)
    svc = "$service"
    panels: list[Panel] = [
        row("Platform"),
        stat(
            "Scrape targets up",
            "Replicas answering Prometheus per service (ServiceDown fires after 2 minutes at 0).",
            Query(f'sum by (job) (up{{job=~"{jobs}"}})', "{{job}}"),
            width=8,
            height=6,
        ),
        timeseries(
            "Requests per second",
            "HTTP requests per service, probes (/healthz, /readyz, /metrics) excluded.",
            Query(
                f"sum by (service) (rate(automation_http_requests_total{{route!~{PROBE_ROUTES}}}{RATE}))",
                "{{service}}",
            ),
            unit="reqps",
            width=8,
            height=6,
        ),
        timeseries(
            "5xx share",
            "Share of HTTP requests answered with a server error, per service, probes (/healthz, /readyz, "
            "/metrics) excluded.",
            Query(
                "sum by (service) (rate(automation_http_requests_total"
                f'{{route!~{PROBE_ROUTES}, status=~"5.."}}{RATE})) '
                f"/ sum by (service) (rate(automation_http_requests_total{{route!~{PROBE_ROUTES}}}{RATE}))",
                "{{service}}",
            ),
            unit="percentunit",
            width=8,
            height=6,
        ),
        timeseries(
            "Dead-lettered per minute",
            "Messages sent to automation.dead, by the service and queue that gave up on them, and the run "
            "requests the executor dead-letters itself (final_failure, poison) (DeadLettersGrowing). Invalid "
            "messages (rejected) count here too.",
            Query(
                "sum by (service, queue) "
                f'(rate(automation_messages_consumed_total{{outcome="dead_lettered"}}{RATE})) * 60',
                "{{service}} {{queue}}",
            ),
            Query(
                "sum by (reason) "
                f'(rate(automation_executor_dead_letters_total{{reason=~"final_failure|poison"}}{RATE})) * 60',
                "executor {{reason}}",
            ),
            width=8,
            height=6,
        ),
        timeseries(
            "Dead letters kept by job-api",
            "Dead letters job-api moved from automation.dead into its table, by original queue: kept now, "
            "and taken in / requeued per minute (POST /api/v1/dead-letters/{id}/requeue).",
            Query("sum by (original_queue) (automation_dead_letters_stored)", "kept {{original_queue}}"),
            Query(
                f"sum by (original_queue) (rate(automation_dead_letters_total{RATE})) * 60",
                "in/min {{original_queue}}",
            ),
            Query(f"sum(rate(automation_dead_letters_requeued_total{RATE})) * 60", "requeued/min"),
            width=8,
            height=6,
        ),
        timeseries(
            "Oldest unsent outbox row",
            "Age of each service's oldest unpublished outbox row (OutboxStuck above 5 minutes).",
            Query("max by (service) (automation_outbox_oldest_age_seconds)", "{{service}}"),
            unit="s",
            width=8,
            height=6,
        ),
        timeseries(
            "Worker saturation",
            "Executor slots in use (running executions / concurrency) and browser-pool contexts in use "
            "(busy / capacity), over all replicas. Near 100% for long: scale out (QueueBackingUp).",
            Query("avg(automation_executor_pool_utilization_ratio)", "executor pool"),
            Query(
                "sum(automation_browser_pool_busy_contexts) / sum(automation_browser_pool_capacity_contexts)",
                "browser pool",
            ),
            unit="percentunit",
            width=8,
            height=6,
        ),
        table(
            "Running versions",
            "automation_build_info per replica.",
            Query("automation_build_info"),
            ("service", "version", "instance"),
            width=16,
        ),
        row(svc, repeat="service"),
        health(svc, width=4),
        timeseries(
            "Request rate",
            "HTTP requests per second by route template (probes excluded).",
            Query(
                "sum by (route) (rate(automation_http_requests_total"
                f'{{service="{svc}", route!~{PROBE_ROUTES}}}{RATE}))',
                "{{route}}",
            ),
            unit="reqps",
            width=10,
        ),
        timeseries(
            "Error rate (5xx)",
            "Share of requests answered with a server error (probes excluded).",
            Query(
                "sum(rate(automation_http_requests_total"
                f'{{service="{svc}", route!~{PROBE_ROUTES}, status=~"5.."}}{RATE})) '
                "/ sum(rate(automation_http_requests_total"
                f'{{service="{svc}", route!~{PROBE_ROUTES}}}{RATE}))',
                "5xx share",
            ),
            unit="percentunit",
            width=10,
        ),
        http_latency(svc),
        queue_flow(svc, width=8),
        outbox(svc, width=8),
        handling_time(svc),
        published(svc, width=12),
        db_pools(svc, width=24),
    ]
    return dashboard(
        "automation-overview",
        "Automation Platform / Overview",
        "Platform health at a glance, then one row per service: traffic, errors, latency, queues, "
        "outbox, connections and database pools.",
        panels,
        [service_variable()],
    )


def scheduler() -> dict[str, Any]:
    svc = "scheduler"
    per_minute = "[$__rate_interval])) * 60"
    panels: list[Panel] = [
        row("Firing"),
        timeseries(
            "Fires per minute by trigger",
            "Runs requested (run.requested through the outbox): schedule, event, backfill (counted when released).",
            Query(f"sum by (trigger) (rate(automation_scheduler_fires_total{per_minute}", "{{trigger}}"),
        ),
        timeseries(
            "Due backlog",
            "Active schedules due but not yet fired, sampled each loop. Above 0 for 5 minutes with no fire "
            "and no slot recorded is SchedulerNotFiring; a short spike at busy minutes is normal.",
            Query("max(automation_scheduler_due_backlog)", "due, not fired"),
        ),
        timeseries(
            "Fire lateness",
            "Commit time of a scheduled fire minus its due time (nominal time plus the job's jitter); "
            "FireLatenessHigh: p95 above 30 s.",
            *quantiles("automation_scheduler_fire_lateness_seconds"),
            unit="s",
        ),
        timeseries(
            "Slots recorded per minute by outcome",
            "Every nominal slot ends one way: fired, skipped (overlap policy), missed or coalesced (after "
            "downtime), paused, dropped (starting deadline), backfill.",
            Query(f"sum by (outcome) (rate(automation_scheduler_fire_outcomes_total{per_minute}", "{{outcome}}"),
            stacked=True,
        ),
        timeseries(
            "Misfires per minute by reason",
            "Slots that did not fire: missed and coalesced (after downtime), dropped (starting deadline), "
            "unrecorded (left out of the record after a long downtime), invalid_schedule (a stored schedule "
            "that no longer parses: tell the job owner).",
            Query(f"sum by (reason) (rate(automation_scheduler_misfires_total{per_minute}", "{{reason}}"),
            Query(f"sum(rate(automation_scheduler_dropped_fires_total{per_minute}", "dropped by deadline"),
        ),
        timeseries(
            "Fire batch time",
            "Duration of one claim-and-fire transaction; slow batches show as lateness.",
            *quantiles("automation_scheduler_fire_batch_seconds"),
            unit="s",
        ),
        row("Triggers and policies"),
        timeseries(
            "Event triggers per minute by outcome",
            "Trigger events by what they did to a job: fired, skipped, rate_limited, duplicate; unmatched "
            "when no job fired.",
            Query(f"sum by (outcome) (rate(automation_scheduler_event_triggers_total{per_minute}", "{{outcome}}"),
        ),
        timeseries(
            "Running executions and replace cancels",
            "Executions the overlap policy sees running, and execution.cancel messages the replace policy "
            "sent (per minute).",
            Query("max(automation_scheduler_running_executions)", "running"),
            Query(f"sum(rate(automation_scheduler_cancels_total{per_minute}", "cancels/min"),
        ),
        timeseries(
            "Schedules and jobs by state",
            "Schedule rows by state (sampled) and the jobs job-api knows, enabled or disabled.",
            Query("max by (state) (automation_scheduler_schedules)", "schedules {{state}}"),
            Query("max by (state) (automation_jobs)", "jobs {{state}}"),
        ),
        row("Messages and housekeeping"),
        published(svc, width=8),
        queue_flow(svc, width=8),
        timeseries(
            "Retention cleanup per hour",
            "Rows removed by the retention cleanup, by table.",
            Query(
                "sum by (table) (rate(automation_scheduler_cleanup_deleted_total[$__rate_interval])) * 3600",
                "{{table}}",
            ),
        ),
        row("Plumbing"),
        health(svc),
        outbox(svc),
        handling_time(svc, width=9),
    ]
    return dashboard(
        "automation-scheduler",
        "Automation Platform / Scheduler",
        "Is it firing, is it late: fires, due backlog, lateness, slot outcomes, misfires, triggers, "
        "policies and batches.",
        panels,
        [],
    )


def events() -> dict[str, Any]:
    svc = "event-gateway"
    ingested = f"rate(automation_events_ingested_total{RATE})"
    rejected = f"rate(automation_events_rejected_total{RATE})"
    panels: list[Panel] = [
        row("Ingest"),
        timeseries(
            "Events ingested by type",
            "Valid events received, new or duplicate (platform and registered types by name, others as 'other').",
            Query(f"sum by (type) ({ingested})", "{{type}}"),
            unit="ops",
            width=12,
        ),
        timeseries(
            "Events ingested by source kind",
            "http: POST /api/v1/events; amqp: seen on automation.events by the history consumer.",
            Query(f"sum by (source_kind) ({ingested})", "{{source_kind}}"),
            unit="ops",
            width=12,
        ),
        timeseries(
            "Rejected per minute by reason",
            "Submissions refused: malformed, invalid_envelope, invalid_data (fails its schema), "
            "forbidden_type, unstorable, too_large, unsupported_media_type.",
            Query(f"sum by (reason) ({rejected}) * 60", "{{reason}}"),
        ),
        timeseries(
            "Rejected share",
            "Refused submissions over all submissions to POST /api/v1/events (refused + ingested with "
            "source_kind http; events seen on automation.events are no submissions): a publisher sending "
            "payloads that fail their schema.",
            Query(
                f"sum({rejected}) / (sum({rejected}) + "
                f'(sum(rate(automation_events_ingested_total{{source_kind="http"}}{RATE})) or vector(0)))',
                "rejected",
            ),
            unit="percentunit",
        ),
        timeseries(
            "Stored by origin",
            "Events newly written to the history (duplicates not counted).",
            Query(f"sum by (origin) (rate(automation_events_stored_total{RATE}))", "{{origin}}"),
            unit="ops",
        ),
        row("HTTP ingress and exchange"),
        http_requests(svc),
        http_latency(svc),
        published(svc, width=8),
        row("History consumer"),
        queue_flow(svc, "event-gateway.history"),
        handling_time(svc),
        row("Plumbing"),
        health(svc),
        outbox(svc, width=18),
    ]
    return dashboard(
        "automation-events",
        "Automation Platform / Events",
        "Event ingress: events by type and source, rejections, history, the gateway's HTTP API and its consumer.",
        panels,
        [],
    )
