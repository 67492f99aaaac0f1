"""Parsed schedules and job snapshots, cached per (job id, version).

Parsing a schedule and validating a JobSpec cost far more than firing; the fire loop does each once
per job version and keeps the result in a bounded least-recently-used cache. The schedule is parsed
with every timing option of the spec (window, DST policies); the job's jitter offset and the
parameters of its scheduled runs (the schema's defaults, validated) are computed once too.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from automation_contracts import ContractError, JobSpec
from automation_schedule import GapPolicy, OverlapPolicy, Schedule, ScheduleError, jitter_offset, parse_schedule
from automation_scheduler.domain.firing import default_parameters


@dataclass(frozen=True, slots=True)
class CompiledJob:
    """One job version ready to fire: its parsed schedule, spec, default parameters and jitter offset."""

    version: int
    schedule: Schedule
    spec: JobSpec
    parameters: dict[str, Any]
    offset: timedelta
    """The job's fixed jitter: each slot is published at its nominal time plus this."""


def compile_schedule(spec: JobSpec, anchor: datetime, expression: str | None = None) -> Schedule:
    """Parse a job's schedule (or ``expression`` in its place) as the fire loop uses it.

    Raises ``ScheduleError`` (also when the job has no schedule).
    """
    text = expression if expression is not None else spec.schedule
    if text is None:
        raise ScheduleError("the job has no schedule")
    return parse_schedule(
        text,
        timezone=spec.timezone,
        start_at=spec.start_at,
        end_at=spec.end_at,
        anchor=anchor,
        gap=GapPolicy(spec.dst_gap),
        overlap=OverlapPolicy(spec.dst_overlap),
    )


def jitter_of(job_id: uuid.UUID, spec: JobSpec) -> timedelta:
    """The job's deterministic jitter offset, in ``[0, jitter_seconds)``."""
    return jitter_offset(str(job_id), spec.jitter_seconds)


def scheduled_parameters(spec: JobSpec) -> dict[str, Any]:
    """The parameters of the job's scheduled runs: its schema's defaults, validated.

    Raises ``ScheduleError`` (field ``parameters``) when they do not validate: such a job cannot be
    scheduled, as job-api refuses a schedule on a job whose required parameters have no default.
    """
    try:
        return default_parameters(spec.parameters)
    except ContractError as exc:
        raise ScheduleError(
            f"scheduled runs take the defaults of the job's parameters, which do not validate: {exc}",
            field="parameters",
        ) from exc


def compile_spec(
    job_id: uuid.UUID, version: int, spec: JobSpec, anchor: datetime, *, parameters: dict[str, Any] | None = None
) -> CompiledJob:
    """Parse one job version (raises ``ScheduleError``, also for parameters its scheduled runs cannot have).

    ``parameters``: the scheduled runs' parameters when the caller already has them (the fire loop, for
    a row whose stored ``run.requested`` template holds them); otherwise they are resolved here.
    """
    return CompiledJob(
        version=version,
        schedule=compile_schedule(spec, anchor),
        spec=spec,
        parameters=scheduled_parameters(spec) if parameters is None else parameters,
        offset=jitter_of(job_id, spec),
    )


def compile_job(
    job_id: uuid.UUID, version: int, spec: dict[str, Any], anchor: datetime, *, parameters: dict[str, Any] | None = None
) -> CompiledJob:
    """Parse and validate one stored job version (raises ``ScheduleError`` or pydantic's ``ValidationError``)."""
    return compile_spec(job_id, version, JobSpec.model_validate(spec), anchor, parameters=parameters)


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
