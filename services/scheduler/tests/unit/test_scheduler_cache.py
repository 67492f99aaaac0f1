"""The parsed-schedule cache: per (job, version), bounded, least recently used evicted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

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


JOB = uuid.UUID("0b9b6f0e-8a7c-4c1e-9a51-0f6b2b7c1d11")


def job(version: int, **changes: object) -> CompiledJob:
    return compile_job(JOB, version, SPEC | changes, T0)


def test_compile_job_parses_the_schedule_with_its_anchor_and_the_defaults() -> None:
    compiled = job(2)
    assert compiled.version == 2
    assert compiled.spec.name == "n"
    assert compiled.parameters == {"site": "fra1"}
    assert compiled.schedule.next_after(T0) == datetime(2026, 11, 23, 12, 1, tzinfo=UTC)
    assert compiled.offset == timedelta(0)


def test_compile_job_uses_the_window_dst_policies_and_jitter_of_the_spec() -> None:
    compiled = job(
        1,
        schedule="30 2 * * *",
        timezone="Europe/Berlin",
        start_at="2026-03-28T00:00:00Z",
        end_at="2026-03-31T00:00:00Z",
        dst_gap="skip",
        jitter_seconds=30,
    )
    fires = list(compiled.schedule.iter_after(T0.replace(month=1)))
    # 29 March is Berlin's spring-forward: 02:30 does not exist and gap "skip" leaves the day out
    assert fires == [datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    assert timedelta(0) <= compiled.offset < timedelta(seconds=30)
    assert compiled.offset == job(1, jitter_seconds=30).offset  # a pure function of the job id and the bound
    assert compiled.offset != compile_job(uuid.uuid4(), 1, SPEC | {"jitter_seconds": 30}, T0).offset


def test_compile_job_refuses_a_bad_schedule_or_none() -> None:
    with pytest.raises(ScheduleError):
        job(1, schedule="61 * * * *")
    with pytest.raises(ScheduleError, match="no schedule"):
        job(1, schedule=None)


def test_scheduled_parameters_are_resolved_once_per_version_and_must_validate() -> None:
    nested = {
        "type": "object",
        "properties": {
            "target": {"type": "object", "default": {"host": "db1"}, "properties": {"port": {"default": 22}}}
        },
    }
    assert job(1, parameters=nested).parameters == {"target": {"host": "db1", "port": 22}}
    required = {"type": "object", "properties": {"site": {"type": "string"}}, "required": ["site"]}
    with pytest.raises(ScheduleError) as caught:
        job(1, parameters=required)
    assert caught.value.field == "parameters"
    assert "parameters.properties.site.default: parameter 'site' is required and has no default" in caught.value.reason


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
