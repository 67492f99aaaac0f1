"""Parsed schedules and job snapshots, cached per (job id, version).

Parsing a schedule and validating a JobSpec cost far more than firing; the fire loop does each once
per job version and keeps the result in a bounded least-recently-used cache.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from automation_contracts import JobSpec
from automation_schedule import Schedule, parse_schedule
from automation_scheduler.domain.firing import default_parameters


@dataclass(frozen=True, slots=True)
class CompiledJob:
    """One job version ready to fire: its parsed schedule, its spec and its default parameters."""

    version: int
    schedule: Schedule
    spec: JobSpec
    parameters: dict[str, Any]


def compile_schedule(expression: str, timezone: str, anchor: datetime) -> Schedule:
    """Parse a job's schedule as the fire loop uses it (raises ``ScheduleError``)."""
    return parse_schedule(expression, timezone=timezone, anchor=anchor)


def compile_job(version: int, spec: dict[str, Any], expression: str, timezone: str, anchor: datetime) -> CompiledJob:
    """Parse and validate one stored job version (raises ``ScheduleError`` or pydantic's ``ValidationError``)."""
    job = JobSpec.model_validate(spec)
    return CompiledJob(
        version=version,
        schedule=compile_schedule(expression, timezone, anchor),
        spec=job,
        parameters=default_parameters(job.parameters),
    )


class CompiledCache:
    """A bounded LRU of :class:`CompiledJob` by job id; a newer version replaces the older entry."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._max_size = max_size
        self._entries: OrderedDict[uuid.UUID, CompiledJob] = OrderedDict()

    def get(self, job_id: uuid.UUID, version: int) -> CompiledJob | None:
        """The cached entry for exactly this version, or None."""
        entry = self._entries.get(job_id)
        if entry is None or entry.version != version:
            return None
        self._entries.move_to_end(job_id)
        return entry

    def put(self, job_id: uuid.UUID, entry: CompiledJob) -> None:
        """Remember ``entry``, evicting the least recently used entries beyond the bound."""
        self._entries[job_id] = entry
        self._entries.move_to_end(job_id)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def discard(self, job_id: uuid.UUID) -> None:
        """Forget a job (deleted or no longer active)."""
        self._entries.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._entries)
