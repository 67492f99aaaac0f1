"""The executions read model's rules: how one execution event changes what we know of a run.

Events arrive at least once and in any order, so they are applied monotonically. Each event is an
:class:`Observation` of one attempt at one :class:`Phase`; it is applied only when
``(attempt, phase)`` is above what is recorded:

- a lower attempt never overwrites a higher one;
- within an attempt, finished beats running beats queued; the first terminal event of an attempt
  wins and repeats are ignored;
- ``execution.failed``/``execution.timed_out`` with ``will_retry: true`` finishes the attempt but
  leaves the execution ``queued`` (error and exit code kept), and the next attempt's start sets
  ``running`` (the last error stays visible until the execution succeeds);
- an ``execution.log`` batch means its attempt is running;
- an event of the current attempt that lags behind may still fill a ``started_at`` not yet known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel

from automation_contracts import (
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionLog,
    ExecutionStarted,
    ExecutionSucceeded,
)

Status = Literal["queued", "running", "succeeded", "failed", "timed_out", "cancelled"]
STATUSES: tuple[Status, ...] = ("queued", "running", "succeeded", "failed", "timed_out", "cancelled")
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
TriggerName = Literal["schedule", "manual", "event", "backfill"]
TRIGGERS: tuple[TriggerName, ...] = ("schedule", "manual", "event", "backfill")


class Phase(IntEnum):
    """How far one attempt got."""

    QUEUED = 0
    RUNNING = 1
    FINISHED = 2


@dataclass(frozen=True, slots=True)
class ExecutionState:
    """What the read model holds about a run's latest attempt."""

    status: Status
    attempt: int
    phase: Phase
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    result: Any = None

    @classmethod
    def queued(cls) -> ExecutionState:
        """A run just requested (attempt 1, nothing started)."""
        return cls(status="queued", attempt=1, phase=Phase.QUEUED)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event says about one attempt."""

    attempt: int
    phase: Phase
    status: Status
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    result: Any = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.attempt, int(self.phase))


def observe(event_type: str, data: BaseModel) -> Observation:
    """The observation an execution event carries; ValueError for a type that is not one."""
    if event_type == "execution.started" and isinstance(data, ExecutionStarted):
        return Observation(data.attempt, Phase.RUNNING, "running", started_at=data.started_at)
    if event_type == "execution.log" and isinstance(data, ExecutionLog):
        return Observation(data.attempt, Phase.RUNNING, "running")
    if event_type == "execution.succeeded" and isinstance(data, ExecutionSucceeded):
        return Observation(
            data.attempt,
            Phase.FINISHED,
            "succeeded",
            started_at=data.started_at,
            finished_at=data.finished_at,
            exit_code=data.exit_code,
            result=data.result,
        )
    if event_type in {"execution.failed", "execution.timed_out"} and isinstance(data, ExecutionFailed):
        final: Status = "failed" if event_type == "execution.failed" else "timed_out"
        return Observation(
            data.attempt,
            Phase.FINISHED,
            "queued" if data.will_retry else final,
            started_at=data.started_at,
            finished_at=None if data.will_retry else data.finished_at,
            exit_code=data.exit_code,
            error=data.error,
            result=data.result,
        )
    if event_type == "execution.cancelled" and isinstance(data, ExecutionCancelled):
        return Observation(
            data.attempt, Phase.FINISHED, "cancelled", finished_at=data.finished_at, error=data.reason or "cancelled"
        )
    raise ValueError(f"{event_type} is not an execution event job-api records")


def apply(current: ExecutionState | None, obs: Observation) -> ExecutionState:
    """The state after ``obs``; ``current`` itself when the observation is stale or a repeat."""
    if current is None:
        return ExecutionState(
            status=obs.status,
            attempt=obs.attempt,
            phase=obs.phase,
            started_at=obs.started_at,
            finished_at=obs.finished_at,
            exit_code=obs.exit_code,
            error=obs.error,
            result=obs.result,
        )
    if obs.key > (current.attempt, int(current.phase)):
        same_attempt = obs.attempt == current.attempt
        started_at = obs.started_at or (current.started_at if same_attempt else None)
        if obs.phase is Phase.RUNNING:
            # A new or resumed attempt: keep the last error visible while it runs.
            return ExecutionState(
                status="running", attempt=obs.attempt, phase=obs.phase, started_at=started_at, error=current.error
            )
        return ExecutionState(
            status=obs.status,
            attempt=obs.attempt,
            phase=obs.phase,
            started_at=started_at,
            finished_at=obs.finished_at,
            exit_code=obs.exit_code,
            error=obs.error,
            result=obs.result,
        )
    if obs.attempt == current.attempt and current.started_at is None and obs.started_at is not None:
        return replace(current, started_at=obs.started_at)
    return current
