"""The scheduler's own defaults among the shared settings."""

from __future__ import annotations

import pytest

from automation_scheduler.settings import SchedulerSettings


def test_the_scheduler_runs_on_asyncios_loop_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvloop's clock and timers have millisecond resolution; the dispatcher times fires finer than that.
    monkeypatch.delenv("AUTOMATION_EVENT_LOOP", raising=False)
    assert SchedulerSettings(env="development").event_loop == "asyncio"
    monkeypatch.setenv("AUTOMATION_EVENT_LOOP", "uvloop")
    assert SchedulerSettings(env="development").event_loop == "uvloop"
