"""The parsed-schedule cache: per (job, version), bounded, least recently used evicted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from automation_schedule import ScheduleError
from automation_scheduler.domain.compiled import CompiledCache, CompiledJob, compile_job

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SPEC = {
    "name": "n",
    "schedule": "@every 1m",
    "timezone": "UTC",
    "enabled": True,
    "timeout_seconds": 60,
    "retries": 0,
    "retry_backoff": {"base_seconds": 1, "max_seconds": 10},
    "priority": 5,
    "parameters": {"type": "object", "properties": {"site": {"type": "string", "default": "fra1"}}},
    "steps": [{"name": "s", "type": "shell", "config": {"command": ["true"]}}],
}


def job(version: int) -> CompiledJob:
    return compile_job(version, SPEC, "@every 1m", "UTC", T0)


def test_compile_job_parses_the_schedule_with_its_anchor_and_the_defaults() -> None:
    compiled = job(2)
    assert compiled.version == 2
    assert compiled.spec.name == "n"
    assert compiled.parameters == {"site": "fra1"}
    assert compiled.schedule.next_after(T0) == datetime(2026, 11, 23, 12, 1, tzinfo=UTC)


def test_compile_job_refuses_a_bad_schedule() -> None:
    with pytest.raises(ScheduleError):
        compile_job(1, SPEC, "61 * * * *", "UTC", T0)


def test_an_entry_is_only_returned_for_its_version() -> None:
    cache = CompiledCache(10)
    job_id = uuid.uuid4()
    cache.put(job_id, job(1))
    assert cache.get(job_id, 1) is not None
    assert cache.get(job_id, 2) is None
    cache.put(job_id, job(2))
    assert cache.get(job_id, 1) is None
    assert len(cache) == 1
    cache.discard(job_id)
    assert cache.get(job_id, 2) is None


def test_least_recently_used_is_evicted() -> None:
    cache = CompiledCache(2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.put(a, job(1))
    cache.put(b, job(1))
    assert cache.get(a, 1) is not None  # a is now the most recent
    cache.put(c, job(1))
    assert cache.get(b, 1) is None
    assert cache.get(a, 1) is not None
    assert cache.get(c, 1) is not None


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CompiledCache(0)
