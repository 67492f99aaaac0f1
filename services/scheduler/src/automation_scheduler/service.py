"""Use cases on schedules: apply a job version (one transaction each).

A job version is decided by :func:`automation_scheduler.domain.schedules.plan_change`; the row is
locked (or inserted) so concurrent deliveries of the same job serialise, and a change that makes the
schedule due earlier notifies every replica's fire loop in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_contracts import JobSpec
from automation_core.logging import get_logger
from automation_scheduler.db import repository as repo
from automation_scheduler.domain.compiled import CompiledCache, CompiledJob, compile_schedule
from automation_scheduler.domain.firing import default_parameters
from automation_scheduler.domain.schedules import IncomingVersion, ScheduleChange, StoredSchedule, plan_change
from automation_scheduler.wake import WakeSignal

log = get_logger(__name__)
MAX_INSERT_RACES = 3


@dataclass(frozen=True, slots=True)
class JobVersionIn:
    """A job version to apply (from ``job.created|updated``; ``spec`` None for ``job.deleted``)."""

    job_id: uuid.UUID
    account_id: uuid.UUID
    version: int
    changed_at: datetime
    spec: JobSpec | None


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a version did."""

    outcome: Literal["applied", "ignored"]
    state: str | None = None
    next_fire_at: datetime | None = None


class ScheduleService:
    """Keeps the schedule rows in step with job versions."""

    def __init__(self, engine: AsyncEngine, cache: CompiledCache, signal: WakeSignal) -> None:
        self._engine = engine
        self._cache = cache
        self._signal = signal

    async def apply(self, change: JobVersionIn) -> Applied:
        """Apply a job version; a version not newer than the stored one is ignored.

        Raises ``automation_schedule.ScheduleError`` when an active job's schedule cannot be parsed.
        """
        spec = change.spec
        incoming = IncomingVersion(
            version=change.version,
            changed_at=change.changed_at,
            deleted=spec is None,
            expression=spec.schedule if spec else None,
            timezone=spec.timezone if spec else "UTC",
            enabled=spec.enabled if spec else False,
        )
        for _ in range(MAX_INSERT_RACES):
            async with self._engine.begin() as conn:
                result = await self._apply_in(conn, change, incoming)
            if result is not None:
                break
        else:  # pragma: no cover - needs MAX_INSERT_RACES concurrent first inserts losing in a row
            raise RuntimeError(f"could not insert the schedule of job {change.job_id}")
        if result.outcome == "applied" and result.next_fire_at is not None:
            self._signal.poke(result.next_fire_at)
        return result

    async def _apply_in(self, conn: AsyncConnection, change: JobVersionIn, incoming: IncomingVersion) -> Applied | None:
        stored = await repo.lock_schedule(conn, change.job_id)
        plan = plan_change(stored, incoming)
        if plan is None:
            assert stored is not None
            log.info("job_version_ignored", version=change.version, stored_version=stored.job_version)
            return Applied("ignored", stored.state, stored.next_fire_at)
        now = await repo.db_now(conn)
        compiled = self._compile(change, plan)
        next_fire_at = plan.next_fire_at(stored, compiled.schedule if compiled else None, now)
        values = self._row_values(change, plan, stored, next_fire_at)
        if stored is None:
            if not await repo.insert_schedule(conn, {"job_id": change.job_id, **values}):
                return None  # another delivery inserted the job first: decide again on its row
        else:
            await repo.update_schedule(conn, change.job_id, values)
        if next_fire_at is not None and (stored is None or next_fire_at != stored.next_fire_at):
            await repo.notify_wake(conn, next_fire_at)
        if compiled is not None:
            self._cache.put(change.job_id, compiled)
        elif plan.state != "active":
            self._cache.discard(change.job_id)
        log.info(
            "job_version_applied",
            version=change.version,
            state=plan.state,
            next_fire_at=next_fire_at.isoformat() if next_fire_at else None,
        )
        return Applied("applied", plan.state, next_fire_at)

    def _compile(self, change: JobVersionIn, plan: ScheduleChange) -> CompiledJob | None:
        spec = change.spec
        if plan.state != "active" or spec is None or spec.schedule is None:
            return None
        return CompiledJob(
            version=change.version,
            schedule=compile_schedule(spec.schedule, spec.timezone, plan.anchor),
            spec=spec,
            parameters=default_parameters(spec.parameters),
        )

    @staticmethod
    def _row_values(
        change: JobVersionIn, plan: ScheduleChange, stored: StoredSchedule | None, next_fire_at: datetime | None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "account_id": change.account_id,
            "job_version": change.version,
            "anchor": plan.anchor,
            "state": plan.state,
            "next_fire_at": next_fire_at,
            "updated_at": func.now(),
        }
        spec = change.spec
        if spec is not None:
            values |= {
                "spec": spec.model_dump(mode="json"),
                "expression": spec.schedule,
                "timezone": spec.timezone,
                "enabled": spec.enabled,
            }
        elif stored is None:  # tombstone of a job deleted before it was seen
            values |= {"spec": None, "expression": None, "timezone": "UTC", "enabled": False}
        else:
            values["enabled"] = False
        return values
