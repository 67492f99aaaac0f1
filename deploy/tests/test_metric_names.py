"""Dashboards and alert rules name only metrics the services export, and the dashboards are
provisionable: schema version 39+, a unique uid, the Prometheus datasource by uid.

What the services export is read from the Prometheus registry after importing libs/core's metrics,
libs/db's pool gauges and every ``services/*/src/automation_*/metrics.py`` (the only place a service
defines metrics), so no
hand-kept list can drift. The end-to-end suite (tests-e2e/test_e2e_observability.py) repeats the check
against the ``/metrics`` of the five running services, which is the final word. Besides those, a query
may name only what Prometheus synthesizes itself for every target (:data:`PROMETHEUS_SYNTHESIZED`).
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

DATASOURCE_UID = "prometheus"
DASHBOARDS = ("overview", "scheduler", "executor", "browser-pool", "events")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
RULES = Path("deploy") / "prometheus" / "rules" / "automation.rules.yml"
#: Series Prometheus adds for every scrape target; the only names a query may use that no service exports.
PROMETHEUS_SYNTHESIZED = frozenset({"up"})
_TYPE_LINE = re.compile(r"^#\s+TYPE\s+([A-Za-z_:][\w:]*)\s+(\w+)")
_SAMPLE_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{|\s)")

# PromQL words that are not metric names: aggregations, keywords and binary operators.
_KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (function, aggregation and label names excluded)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exposed_metric_names(exposition: str) -> set[str]:
    """Series names a Prometheus text exposition offers: every sample's name, and from each ``# TYPE``
    line the names its type implies (histograms ``_bucket``/``_sum``/``_count``, counters ``_total``),
    so a metric that has no sample yet (no label set observed) still counts as exposed."""
    names: set[str] = set()
    for line in exposition.splitlines():
        typed = _TYPE_LINE.match(line)
        if typed:
            name, kind = typed.groups()
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
            elif kind == "summary":
                names.update(name + suffix for suffix in ("_sum", "_count"))
            elif kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
            continue
        sample = _SAMPLE_LINE.match(line)
        if sample and not line.startswith("#"):
            names.add(sample.group(1))
    return names


def service_metric_modules(repo_root: Path) -> list[str]:
    """``automation_<service>.metrics`` of every service that has a metrics module."""
    return sorted(f"{path.parent.name}.metrics" for path in repo_root.glob("services/*/src/automation_*/metrics.py"))


def registry_metric_names(repo_root: Path) -> set[str]:
    """Every series name of the process registry once libs/core's, libs/db's and each service's metrics are imported."""
    for module in ("automation_core.metrics", "automation_db.pools", *service_metric_modules(repo_root)):
        importlib.import_module(module)
    return exposed_metric_names(generate_latest(REGISTRY).decode())


def rule_expressions(repo_root: Path) -> list[str]:
    """The PromQL of every recording and alerting rule."""
    groups = yaml.safe_load((repo_root / RULES).read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """PromQL of every panel target, and the metric of every ``label_values(metric, label)`` variable."""
    exprs = [obj["expr"] for obj in walk(dashboard.get("panels", [])) if isinstance(obj.get("expr"), str)]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = _LABEL_VALUES.match(text)
        exprs.append(match.group(1) if match else text)
    return [expr for expr in exprs if expr.strip()]


@pytest.fixture(scope="module")
def known_metrics(repo_root: Path) -> set[str]:
    return registry_metric_names(repo_root) | PROMETHEUS_SYNTHESIZED


@pytest.fixture(scope="module")
def dashboards(repo_root: Path) -> dict[str, dict[str, Any]]:
    folder = repo_root / "deploy" / "grafana" / "dashboards"
    assert sorted(path.stem for path in folder.glob("*.json")) == sorted(DASHBOARDS)
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in DASHBOARDS}


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(automation_http_request_duration_seconds_bucket"
        '{service="$service", le=~"x|y"}[$__rate_interval]))) / on (service) group_left (version) '
        'automation_build_info or vector(0) and absent(up{job="a:b"}) '
        '* label_replace(x_total offset 5m, "dst", "v", "src", "(.*)")'
    )
    assert metric_names(expr) == {
        "automation_http_request_duration_seconds_bucket",
        "automation_build_info",
        "up",
        "x_total",
    }
    assert metric_names("max(automation_jobs) > 0 unless bool 1e3") == {"automation_jobs"}


def test_exposed_names_expand_types_without_samples() -> None:
    exposition = "\n".join(
        [
            "# HELP a_seconds Time.",
            "# TYPE a_seconds histogram",
            "# HELP b_total Things.",
            "# TYPE b_total counter",
            "# TYPE c counter",
            "# TYPE d gauge",
            'd{x="1"} 2.0',
            "e 1",
        ]
    )
    assert exposed_metric_names(exposition) == {
        "a_seconds",
        "a_seconds_bucket",
        "a_seconds_sum",
        "a_seconds_count",
        "b_total",
        "c",
        "c_total",
        "d",
        "e",
    }


def test_every_service_metrics_module_is_registered(repo_root: Path, known_metrics: set[str]) -> None:
    assert len(service_metric_modules(repo_root)) == 5
    for name in (
        "automation_scheduler_fire_lateness_seconds_bucket",
        "automation_outbox_pending_messages",
        "automation_messages_received_total",
        "automation_executor_executions_total",
        "automation_browser_pool_capacity_contexts",
        "automation_events_ingested_total",
        "automation_jobs",
    ):
        assert name in known_metrics


def test_alert_rules_use_known_metrics(repo_root: Path, known_metrics: set[str]) -> None:
    exprs = rule_expressions(repo_root)
    assert len(exprs) >= 7
    for expr in exprs:
        unknown = metric_names(expr) - known_metrics
        assert not unknown, f"unknown metrics {sorted(unknown)} in rule:\n{expr}"


def test_dashboards_use_known_metrics(dashboards: dict[str, dict[str, Any]], known_metrics: set[str]) -> None:
    for name, dashboard in dashboards.items():
        exprs = dashboard_expressions(dashboard)
        assert len(exprs) >= 5, f"{name}: too few queries"
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"{name}: no metric in {expr!r}"
            unknown = names - known_metrics
            assert not unknown, f"{name}: unknown metrics {sorted(unknown)} in {expr!r}"


def test_dashboards_are_built_by_the_generator(run: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = run(sys.executable, "deploy/grafana/build_dashboards.py", "--check")
    assert result.returncode == 0, result.stderr


def test_dashboards_are_provisionable(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [dashboard["uid"] for dashboard in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in dashboards.items():
        assert dashboard["schemaVersion"] >= 39, name
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), name
        assert dashboard["title"]
        panel_ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(set(panel_ids)) == len(panel_ids), f"{name}: duplicate panel ids"
        for obj in walk(dashboard):
            datasource = obj.get("datasource")
            if isinstance(datasource, dict) and datasource.get("type") == "prometheus":
                assert datasource == {"type": "prometheus", "uid": DATASOURCE_UID}, name
            else:
                assert datasource is None or datasource.get("type") == "grafana", f"{name}: {datasource!r}"
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == DATASOURCE_UID


def test_overview_has_one_row_per_service(dashboards: dict[str, dict[str, Any]]) -> None:
    overview = dashboards["overview"]
    rows = [panel for panel in overview["panels"] if panel["type"] == "row"]
    assert any(row.get("repeat") == "service" for row in rows)
    (variable,) = [var for var in overview["templating"]["list"] if var["name"] == "service"]
    assert variable["includeAll"] is True
    queries = " ".join(dashboard_expressions(overview))
    for metric in (
        "automation_http_requests_total",
        "automation_http_request_duration_seconds_bucket",
        "automation_messages_consumed_total",
        "automation_outbox_pending_messages",
        "up",
    ):
        assert metric in queries


def test_grafana_provisioning_points_at_the_dashboards(repo_root: Path) -> None:
    provisioning = repo_root / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [source["uid"] for source in datasources] == [DATASOURCE_UID]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "automation.yml").read_text())["providers"]
    compose = (repo_root / "docker-compose.yml").read_text()
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in compose
