"""deploy/prometheus: promtool accepts the config and the rules, the rules' unit tests pass, every
alert the platform promises exists with a runbook section, and every service is scraped."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

Run = Callable[..., subprocess.CompletedProcess[str]]

ALERTS = {
    "ServiceDown",
    "SchedulerNotFiring",
    "FireLatenessHigh",
    "FiresLeftToRelays",
    "ExecutionsFailing",
    "BrowserTasksExpiring",
    "DeadLettersGrowing",
    "OutboxStuck",
    "QueueBackingUp",
    "DatabasePoolExhausted",
}
RULES = "deploy/prometheus/rules/automation.rules.yml"


@pytest.fixture(scope="module")
def alert_rules(repo_root: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load((repo_root / RULES).read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub derives from a document's headings (lower case, punctuation dropped, spaces to -)."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(anchor)
    return anchors


def test_promtool_checks_the_config(promtool: str, run: Run) -> None:
    result = run(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_checks_the_rules(promtool: str, run: Run) -> None:
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str, run: Run) -> None:
    result = run(promtool, "test", "rules", "deploy/prometheus/tests/automation.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_cover_the_key_alerts(repo_root: Path) -> None:
    tests = yaml.safe_load((repo_root / "deploy/prometheus/tests/automation.rules.test.yml").read_text())
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {"ServiceDown", "OutboxStuck", "DeadLettersGrowing"} <= firing
    assert firing == ALERTS


def test_every_alert_has_a_runbook_section(repo_root: Path, alert_rules: list[dict[str, Any]]) -> None:
    assert {rule["alert"] for rule in alert_rules} == ALERTS
    anchors = github_anchors((repo_root / "docs" / "runbooks.md").read_text())
    for rule in alert_rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/runbooks.md", url
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in docs/runbooks.md"


def test_every_service_is_scraped_by_its_compose_name(repo_root: Path, app_services: dict[str, int]) -> None:
    config = yaml.safe_load((repo_root / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    compose_services = yaml.safe_load((repo_root / "docker-compose.yml").read_text())["services"]
    for name, port in app_services.items():
        assert name in compose_services
        (discovery,) = jobs[name]["dns_sd_configs"]
        assert discovery == {"names": [name], "type": "A", "port": port, "refresh_interval": "30s"}
