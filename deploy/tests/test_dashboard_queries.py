"""What some dashboard panels compute, evaluated by promtool on synthetic series: the 5xx shares leave the
probes out, the Events "Rejected share" divides by HTTP submissions only, the Executor's executor.runs panel
counts what comes back from the delay queues as coming in (as QueueBackingUp does), and the Browser pool
dashboard shows no outbox (browser-pool has none).

Each panel's query is taken from the generated JSON (``$__rate_interval`` as 5m, ``$service`` as given) and
checked with ``promtool test rules`` (``promql_expr_test``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

Run = Callable[..., subprocess.CompletedProcess[str]]
EVAL_TIME = "10m"


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def board(repo_root: Path, name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((repo_root / "deploy" / "grafana" / "dashboards" / f"{name}.json").read_text())
    return board


def panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [p for p in walk(dashboard["panels"]) if p.get("type") != "row" and p.get("title") == title]
    return found


def target(dashboard: dict[str, Any], title: str, legend: str | None = None, service: str = "") -> str:
    """The PromQL of a panel's query (the one with ``legend`` when given), ready for promtool."""
    targets = panel(dashboard, title)["targets"]
    (chosen,) = [t for t in targets if legend is None or t["legendFormat"] == legend]
    expr: str = chosen["expr"]
    return expr.replace("$__rate_interval", "5m").replace("$service", service)


def evaluate(
    promtool: str, run: Run, tmp_path: Path, series: dict[str, str], expected: list[tuple[str, str, float]]
) -> None:
    """promtool evaluates each ``(expr, labels, value)`` at :data:`EVAL_TIME` over ``series`` (one sample a
    minute) and must find exactly that one sample."""
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "promql_expr_test": [
                    {"expr": expr, "eval_time": EVAL_TIME, "exp_samples": [{"labels": labels, "value": value}]}
                    for expr, labels, value in expected
                ],
            }
        ],
    }
    path = tmp_path / "dashboard.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = run(promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def series(name: str, **labels: str) -> str:
    """A series for promtool's ``input_series``."""
    return name + "{" + ", ".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def http(route: str, status: str) -> str:
    return series("automation_http_requests_total", service="job-api", method="GET", route=route, status=status)


def published(service: str, exchange: str, routing_key: str) -> str:
    return series("automation_messages_published_total", service=service, exchange=exchange, routing_key=routing_key)


# Per second: job-api answers 1 request with a 500 and 1 with a 200, and is probed 8 + 4 times.
HTTP_SERIES = {
    http("/api/v1/jobs", "500"): "0+60x20",
    http("/api/v1/jobs", "200"): "0+60x20",
    http("/healthz", "200"): "0+480x20",
    http("/readyz", "200"): "0+120x20",
    http("/metrics", "200"): "0+120x20",
}


def test_the_5xx_shares_leave_the_probes_out(repo_root: Path, promtool: str, run: Run, tmp_path: Path) -> None:
    overview = board(repo_root, "overview")
    evaluate(
        promtool,
        run,
        tmp_path,
        HTTP_SERIES,
        [
            (target(overview, "5xx share"), '{service="job-api"}', 0.5),
            (target(overview, "Error rate (5xx)", service="job-api"), "{}", 0.5),
        ],
    )


def test_the_rejected_share_is_of_http_submissions(repo_root: Path, promtool: str, run: Run, tmp_path: Path) -> None:
    # Per second: 1 submission refused, 3 events ingested over HTTP, 10 seen on automation.events.
    rejected, ingested = "automation_events_rejected_total", "automation_events_ingested_total"
    gateway = "event-gateway"
    given = {
        series(rejected, service=gateway, reason="invalid_data"): "0+60x20",
        series(rejected, service=gateway, reason="malformed"): "0+0x20",
        series(ingested, service=gateway, type="other", source_kind="http"): "0+180x20",
        series(ingested, service=gateway, type="other", source_kind="amqp"): "0+180x20",
        series(ingested, service=gateway, type="execution.log", source_kind="amqp"): "0+420x20",
    }
    evaluate(promtool, run, tmp_path, given, [(target(board(repo_root, "events"), "Rejected share"), "{}", 0.25)])


def test_executor_runs_counts_what_comes_back_from_the_delay_queues(
    repo_root: Path, promtool: str, run: Run, tmp_path: Path
) -> None:
    # Per second: 0.5 new run requests, 1.5 throttled back through the 1 s delay queue, 0.25 retries after
    # 5 s; 1 browser task on automation.commands (no run request).
    given = {
        published("scheduler", "automation.commands", "run.requested"): "0+30x20",
        published("executor", "automation.retry", "automation.retry.run.requested.1000ms"): "0+90x20",
        published("executor", "automation.retry", "automation.retry.run.requested.5000ms"): "0+15x20",
        published("executor", "automation.commands", "browser.task"): "0+60x20",
    }
    executor = board(repo_root, "executor")
    title = "executor.runs: in and out"
    evaluate(
        promtool,
        run,
        tmp_path,
        given,
        [
            (target(executor, title, "published"), "{}", 0.5),
            (target(executor, title, "back from delay queues"), "{}", 1.75),
        ],
    )


def test_the_alert_and_the_panel_count_the_same_way_in(repo_root: Path) -> None:
    """QueueBackingUp's executor.runs clause names what the panel shows as coming in."""
    groups = yaml.safe_load((repo_root / "deploy" / "prometheus" / "rules" / "automation.rules.yml").read_text())
    (rule,) = [r for g in groups["groups"] for r in g["rules"] if r.get("alert") == "QueueBackingUp"]
    executor = board(repo_root, "executor")
    title = "executor.runs: in and out"
    compact = "".join(rule["expr"].split())
    for legend in ("published", "back from delay queues"):
        selector = target(executor, title, legend).split("{", 1)[1].split("}", 1)[0]
        assert "".join(selector.split()) in compact, legend


def test_the_browser_pool_dashboard_shows_no_outbox(repo_root: Path) -> None:
    dashboard = board(repo_root, "browser-pool")
    exprs = [obj["expr"] for obj in walk(dashboard["panels"]) if isinstance(obj.get("expr"), str)]
    assert exprs
    assert not [expr for expr in exprs if "automation_outbox_" in expr]
    assert "Outbox backlog" not in {p.get("title") for p in walk(dashboard["panels"])}


@pytest.mark.parametrize("title", ["5xx share", "Error rate (5xx)"])
def test_every_5xx_query_of_the_overview_filters_the_probes(repo_root: Path, title: str) -> None:
    expr = target(board(repo_root, "overview"), title)
    assert expr.count("automation_http_requests_total{") == 2
    assert expr.count('route!~"/healthz|/readyz|/metrics"') == 2
