"""browser-pool settings: defaults of the brief, environment overrides, capacity."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from automation_browser_pool.settings import BrowserPoolSettings


def settings(**overrides: object) -> BrowserPoolSettings:
    return BrowserPoolSettings(env="development", **overrides)  # type: ignore[arg-type]


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHROMIUM_PATH", "BROWSER_POOL_SIZE", "BROWSER_CONTEXTS_PER_BROWSER", "BROWSER_RECYCLE_AFTER"):
        monkeypatch.delenv(f"AUTOMATION_{name}", raising=False)
    monkeypatch.delenv("AUTOMATION_ARTIFACT_RETENTION_HOURS", raising=False)
    s = settings()
    assert s.service_name == "browser-pool"
    assert s.http_port == 8003
    assert s.chromium_path == "/usr/bin/chromium"
    assert (s.browser_pool_size, s.browser_contexts_per_browser, s.browser_recycle_after) == (2, 4, 200)
    assert s.artifact_retention_hours == 168
    assert s.pool_capacity == 8


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMATION_BROWSER_POOL_SIZE", "3")
    monkeypatch.setenv("AUTOMATION_BROWSER_CONTEXTS_PER_BROWSER", "5")
    monkeypatch.setenv("AUTOMATION_BROWSER_RECYCLE_AFTER", "10")
    monkeypatch.setenv("AUTOMATION_CHROMIUM_PATH", "/opt/chromium/chrome")
    monkeypatch.setenv("AUTOMATION_ARTIFACT_RETENTION_HOURS", "24")
    s = settings()
    assert (s.browser_pool_size, s.browser_contexts_per_browser, s.browser_recycle_after) == (3, 5, 10)
    assert s.chromium_path == "/opt/chromium/chrome"
    assert s.artifact_retention_hours == 24
    assert s.pool_capacity == 15


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="browser_pool_size"):
        settings(browser_pool_size=0)
