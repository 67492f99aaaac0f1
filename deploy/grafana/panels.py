"""Building blocks of the Grafana dashboards (schema 39): panels, queries, rows and the grid layout.

``platform_boards.py`` and ``worker_boards.py`` compose the five dashboards from these; nothing here
knows a metric name except the per-service "plumbing" panels every dashboard shares (health, outbox,
queues, HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Panel = dict[str, Any]
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GRID_WIDTH = 24
RATE = "[$__rate_interval]"
SERVICES = ("job-api", "scheduler", "executor", "browser-pool", "event-gateway")
PROBE_ROUTES = '"/healthz|/readyz|/metrics"'
#: What the executor puts in its delay queues (``automation.retry``), which dead-letter back into ``executor.runs``.
RETRY_RUN_REQUESTS = 'exchange="automation.retry", routing_key=~"automation\\\\.retry\\\\.run\\\\.requested\\\\..+"'


@dataclass(frozen=True)
class Query:
    """One PromQL target and the legend of its series."""

    expr: str
    legend: str = ""


def _targets(queries: tuple[Query, ...], *, instant: bool) -> list[dict[str, Any]]:
    return [
        {
            "datasource": dict(DATASOURCE),
            "refId": chr(ord("A") + index),
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": not instant,
            "instant": instant,
            "editorMode": "code",
        }
        for index, query in enumerate(queries)
    ]


def _with_size(panel: Panel, width: int, height: int) -> Panel:
    panel["gridPos"] = {"h": height, "w": width, "x": 0, "y": 0}
    return panel


def timeseries(
    title: str,
    description: str,
    *queries: Query,
    unit: str = "short",
    width: int = 8,
    height: int = 8,
    stacked: bool = False,
    right_axis: tuple[str, str] | None = None,
) -> Panel:
    """A time series panel; ``right_axis=(series name, unit)`` puts one series on its own axis."""
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        "axisSoftMin": 0,
    }
    if stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    overrides: list[dict[str, Any]] = []
    if right_axis is not None:
        name, axis_unit = right_axis
        overrides.append(
            {
                "matcher": {"id": "byName", "options": name},
                "properties": [
                    {"id": "unit", "value": axis_unit},
                    {"id": "custom.axisPlacement", "value": "right"},
                ],
            }
        )
    panel: Panel = {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "targets": _targets(queries, instant=False),
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": overrides},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    return _with_size(panel, width, height)


def stat(
    title: str,
    description: str,
    *queries: Query,
    width: int = 6,
    height: int = 8,
    good_at: float = 1,
    unit: str = "short",
) -> Panel:
    """Instant values, red below ``good_at`` and green from it."""
    panel: Panel = {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "targets": _targets(queries, instant=True),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "green", "value": good_at}],
                },
                "mappings": [],
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "orientation": "horizontal",
            "justifyMode": "auto",
        },
    }
    return _with_size(panel, width, height)


def table(
    title: str, description: str, query: Query, columns: tuple[str, ...], *, width: int = GRID_WIDTH, height: int = 6
) -> Panel:
    """An instant table of one query's labels (the value column hidden), columns in the given order."""
    target = _targets((query,), instant=True)[0]
    target["format"] = "table"
    panel: Panel = {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "targets": [target],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "transformations": [
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value": True, "__name__": True},
                    "indexByName": {name: index for index, name in enumerate(columns)},
                },
            }
        ],
    }
    return _with_size(panel, width, height)


def row(title: str, *, repeat: str | None = None) -> Panel:
    """A row header; ``repeat`` names the variable the row repeats for."""
    panel: Panel = {"type": "row", "title": title, "collapsed": False, "panels": []}
    if repeat is not None:
        panel["repeat"] = repeat
    return _with_size(panel, GRID_WIDTH, 1)


def layout(panels: list[Panel]) -> list[Panel]:
    """Number the panels and place them left to right, wrapping at the grid width; rows start a line."""
    x = y = line_height = 0
    for number, panel in enumerate(panels, start=1):
        grid = panel["gridPos"]
        if panel["type"] == "row" or x + grid["w"] > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        grid["x"], grid["y"] = x, y
        panel["id"] = number
        x += grid["w"]
        line_height = max(line_height, grid["h"])
        if panel["type"] == "row":
            x, y, line_height = 0, y + 1, 0
    return panels


def quantiles(metric: str, selector: str = "", by: str = "") -> tuple[Query, ...]:
    """p50, p95 and p99 of a histogram (``metric`` without ``_bucket``)."""
    labels = f"le, {by}" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{selector}{RATE})))",
            f"{legend}p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    )


def health(service: str, *, width: int = 6, height: int = 8) -> Panel:
    """Replicas scraped, and the worst replica's database and broker connection."""
    return stat(
        "Health",
        f"Replicas of {service} answering Prometheus (ServiceDown), and the worst replica's database and "
        "broker connection (1 = up; the database is checked at every scrape).",
        Query(f'sum(up{{job="{service}"}})', "replicas up"),
        Query(f'min(automation_database_up{{service="{service}"}})', "database"),
        Query(f'min(automation_broker_connected{{service="{service}"}})', "broker"),
        width=width,
        height=height,
    )


def outbox(service: str, *, width: int = 9) -> Panel:
    """Unsent outbox rows and the age of the oldest (not for browser-pool, which has no outbox)."""
    assert service != "browser-pool", "browser-pool has no outbox: its gauges have no samples"
    none_there = " browser-pool has no outbox: nothing here for it." if service.startswith("$") else ""
    return timeseries(
        "Outbox backlog",
        f"Rows of {service}'s outbox not yet published, and the age of the oldest (OutboxStuck: older "
        f"than 5 minutes for 5 minutes).{none_there}",
        Query(f'sum(automation_outbox_pending_messages{{service="{service}"}})', "pending"),
        Query(f'max(automation_outbox_oldest_age_seconds{{service="{service}"}})', "oldest age"),
        width=width,
        right_axis=("oldest age", "s"),
    )


def db_pools(service: str, *, width: int = 12) -> Panel:
    """Database connections in use per pool, against what each pool may open."""
    return timeseries(
        "Database connections",
        f"Connections {service}'s database pools hold in use, and the most they may open, summed over "
        "replicas (pool main: the SQLAlchemy engine; hot: the executor's hot statements; recording: "
        "job-api's recording of execution events). In use at the maximum: callers wait for a connection "
        "(DatabasePoolExhausted).",
        Query(
            f'sum by (pool) (automation_db_pool_connections{{service="{service}", state="in_use"}})', "{{pool}} in use"
        ),
        Query(f'sum by (pool) (automation_db_pool_max_connections{{service="{service}"}})', "{{pool}} max"),
        width=width,
    )


def published(service: str, *, width: int = 9) -> Panel:
    return timeseries(
        "Published by routing key",
        f"Messages {service} published and the broker confirmed, per second.",
        Query(
            f'sum by (routing_key) (rate(automation_messages_published_total{{service="{service}"}}{RATE}))',
            "{{routing_key}}",
        ),
        unit="ops",
        width=width,
    )


def queue_flow(service: str, queue: str = "", *, published_key: str = "", delayed: str = "", width: int = 12) -> Panel:
    """Deliveries received and how they ended (acked, requeued, dead_lettered), and what was published in:
    to ``automation.commands`` with ``published_key``, and (``delayed``: a selector of
    ``automation_messages_published_total``) into the delay queues that dead-letter back into the queue."""
    selector = f'service="{service}"' + (f', queue="{queue}"' if queue else "")
    queries = []
    if published_key:
        queries.append(
            Query(
                "sum(rate(automation_messages_published_total"
                f'{{exchange="automation.commands", routing_key="{published_key}"}}{RATE}))',
                "published",
            )
        )
    if delayed:
        queries.append(
            Query(f"sum(rate(automation_messages_published_total{{{delayed}}}{RATE}))", "back from delay queues")
        )
    queries += [
        Query(f"sum by (queue) (rate(automation_messages_received_total{{{selector}}}{RATE}))", "{{queue}} received"),
        Query(
            f"sum by (queue, outcome) (rate(automation_messages_consumed_total{{{selector}}}{RATE}))",
            "{{queue}} {{outcome}}",
        ),
    ]
    where = queue or f"every queue {service} consumes"
    sent = " 'published' is what was sent to the queue (QueueBackingUp)." if published_key else ""
    if delayed:
        sent = (
            " What enters the queue (QueueBackingUp compares it with acked + dead_lettered): 'published' to "
            "automation.commands, and 'back from delay queues': requests put in automation.retry (throttled by "
            "max_concurrency, retries), which dead-letter back into the queue after their delay."
        )
    return timeseries(
        f"{queue or 'Queues'}: in and out",
        f"Deliveries per second from {where}: received (redeliveries included) and finished by outcome "
        "(acked; requeued: handed back, delivered again; dead_lettered: invalid or out of attempts, see "
        f"DeadLettersGrowing).{sent}",
        *queries,
        unit="ops",
        width=width,
    )


def handling_time(service: str, *, width: int = 12) -> Panel:
    return timeseries(
        "Handling time p95 by queue",
        f"95th percentile of the time from a delivery to its outcome, per queue of {service}.",
        Query(
            "histogram_quantile(0.95, sum by (le, queue) (rate(automation_message_handling_duration_seconds_bucket"
            f'{{service="{service}"}}{RATE})))',
            "{{queue}}",
        ),
        unit="s",
        width=width,
    )


def http_requests(service: str, *, width: int = 8) -> Panel:
    return timeseries(
        "Requests by route and status",
        f"HTTP requests to {service} per second (route templates; probes excluded).",
        Query(
            "sum by (route, status) (rate(automation_http_requests_total"
            f'{{service="{service}", route!~{PROBE_ROUTES}}}{RATE}))',
            "{{route}} {{status}}",
        ),
        unit="reqps",
        width=width,
    )


def http_latency(service: str, *, width: int = 8) -> Panel:
    return timeseries(
        "p95 latency by route",
        f"95th percentile of {service}'s HTTP handling time per route template.",
        Query(
            "histogram_quantile(0.95, sum by (le, route) (rate(automation_http_request_duration_seconds_bucket"
            f'{{service="{service}", route!~{PROBE_ROUTES}}}{RATE})))',
            "{{route}}",
        ),
        unit="s",
        width=width,
    )


def dashboard(uid: str, title: str, description: str, panels: list[Panel], variables: list[Any]) -> dict[str, Any]:
    """A provisionable dashboard: the shared header, links to its siblings and the laid-out panels."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["automation"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": ["automation"],
                "asDropdown": True,
                "title": "Automation",
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": layout(panels),
    }


def service_variable() -> dict[str, Any]:
    """``$service``: every service reporting build info, all selected by default."""
    query = "label_values(automation_build_info, service)"
    return {
        "name": "service",
        "label": "Service",
        "type": "query",
        "datasource": dict(DATASOURCE),
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }
