"""Dashboards and alert rules name only metrics the services export (known_metrics.txt), and the
dashboards are provisionable: schema version 39+, a unique uid, the Prometheus datasource by uid."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

DATASOURCE_UID = "prometheus"
DASHBOARDS = ("overview", "scheduler", "executor", "browser-pool", "events")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

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


def load_known_metrics(path: Path) -> set[str]:
    """Names in known_metrics.txt, histograms expanded to their _bucket/_sum/_count series."""
    known: set[str] = set()
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        name, *kind = fields
        if kind == ["histogram"]:
            known.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            assert not kind, f"known_metrics.txt: unexpected {line!r}"
            known.add(name)
    return known


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
def known_metrics() -> set[str]:
    return load_known_metrics(Path(__file__).with_name("known_metrics.txt"))


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


def test_known_metrics_expand_histograms(known_metrics: set[str]) -> None:
    assert "automation_scheduler_fire_lateness_seconds_bucket" in known_metrics
    assert "automation_scheduler_fire_lateness_seconds" not in known_metrics
    assert "automation_outbox_pending_messages" in known_metrics


def test_alert_rules_use_known_metrics(repo_root: Path, known_metrics: set[str]) -> None:
    groups = yaml.safe_load((repo_root / "deploy/prometheus/rules/automation.rules.yml").read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
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
