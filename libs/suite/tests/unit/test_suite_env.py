"""make dev's environment: secrets generated once and kept, user settings win, ports per service."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from automation_suite import SERVICES, ServiceProcess, SuiteConfig, dev_environment


def test_secrets_are_generated_once_and_kept_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOMATION_JWT_SECRET", raising=False)
    monkeypatch.delenv("AUTOMATION_ADMIN_TOKEN", raising=False)
    first = dev_environment(tmp_path)
    second = dev_environment(tmp_path)
    assert first["AUTOMATION_JWT_SECRET"] == second["AUTOMATION_JWT_SECRET"]
    assert len(first["AUTOMATION_ADMIN_TOKEN"]) >= 32
    assert first["AUTOMATION_ENV"] == "development"
    assert stat.S_IMODE((tmp_path / "secrets.env").stat().st_mode) == 0o600


def test_user_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMATION_ADMIN_TOKEN", "mine" * 10)
    monkeypatch.setenv("AUTOMATION_LOG_LEVEL", "DEBUG")
    env = dev_environment(tmp_path)
    assert env["AUTOMATION_ADMIN_TOKEN"] == "mine" * 10
    assert env["AUTOMATION_LOG_LEVEL"] == "DEBUG"


def test_each_process_gets_its_own_port_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMATION_HTTP_PORT", "1")  # a stray global setting must not leak into every service
    config = SuiteConfig(env={"AUTOMATION_ENV": "development"})
    ports = {name: ServiceProcess(name, config).environment()["AUTOMATION_HTTP_PORT"] for name in SERVICES}
    assert ports == {
        "job-api": "8000",
        "scheduler": "8001",
        "executor": "8002",
        "browser-pool": "8003",
        "event-gateway": "8004",
    }
    assert config.url("executor") == "http://127.0.0.1:8002"
