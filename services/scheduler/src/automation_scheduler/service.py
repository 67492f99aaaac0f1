"""Use cases on schedules: apply a job version (one transaction each).

A job version is decided by :func:`automation_scheduler.domain.schedules.plan_change`; the row is
locked (or inserted) so concurrent deliveries of the same job serialise, and a change that makes the
schedule due earlier notifies every replica's fire loop in the same transaction. In that same
transaction a resumed job's held-back slots are recorded as ``paused``, and the job's event triggers
are rewritten (kept only while the job is enabled); a change of trigger patterns asks the bindings
reconciler to update the trigger queue's bindings after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_contracts import JobSpec
from automation_core.logging import get_logger
from automation_schedule import ScheduleError, jitter_offset
from automation_scheduler import metrics
from automation_scheduler.db import repository as repo
from automation_scheduler.domain.compiled import CompiledCache, CompiledJob, compile_spec, scheduled_parameters
from automation_scheduler.domain.policies import slots_between
from automation_scheduler.domain.schedules import (
    IncomingVersion,
    ScheduleChange,
    ScheduleState,
    StoredSchedule,
    pause_bookkeeping,
    plan_change,
    settle_state,
    timing_of,
)
from automation_scheduler.domain.triggers import pattern_head
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
    paused_slots: int = 0
    triggers_changed: bool = False


def incoming_of(change: JobVersionIn) -> IncomingVersion:
    """The decision inputs a job version carries."""
    spec = change.spec
    return IncomingVersion(
        version=change.version,
        changed_at=change.changed_at,
        deleted=spec is None,
        expression=spec.schedule if spec else None,
        timezone=spec.timezone if spec else "UTC",
        enabled=spec.enabled if spec else False,
        timing=timing_of(spec.model_dump(mode="json")) if spec else timing_of(None),
        max_runs=spec.max_runs if spec else None,
    )


def trigger_rows(spec: JobSpec | None) -> list[dict[str, Any]]:
    """The ``triggers`` rows of a job version: none unless the job exists and is enabled."""
    if spec is None or not spec.enabled:
        return []
    return [
        {
            "position": position,
            "pattern": trigger.type,
            "head": pattern_head(trigger.type),
            "conditions": [condition.model_dump(mode="json") for condition in trigger.where],
            "max_per_minute": trigger.max_per_minute,
        }
        for position, trigger in enumerate(spec.triggers)
    ]


class ScheduleService:
    """Keeps the schedule rows (and trigger rows) in step with job versions."""

    def __init__(
        self,
        engine: AsyncEngine,
        cache: CompiledCache,
        signal: WakeSignal,
        *,
        max_paused_records: int = 1000,
        on_triggers_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._signal = signal
        self._max_paused_records = max_paused_records
        self._on_triggers_changed = on_triggers_changed

    async def apply(self, change: JobVersionIn) -> Applied:
        """Apply a job version; a version not newer than the stored one is ignored.

        Raises ``automation_schedule.ScheduleError`` when an active job's schedule cannot be parsed.
        """
        incoming = incoming_of(change)
        for _ in range(MAX_INSERT_RACES):
            async with self._engine.begin() as conn:
                result = await self._apply_in(conn, change, incoming)
            if result is not None:
                break
        else:  # pragma: no cover - needs MAX_INSERT_RACES concurrent first inserts losing in a row
            raise RuntimeError(f"could not insert the schedule of job {change.job_id}")
        if result.outcome == "applied" and result.next_fire_at is not None:
            self._signal.poke(result.next_fire_at)
        if result.paused_slots:
            metrics.FIRE_OUTCOMES.labels("paused").inc(result.paused_slots)
        if result.triggers_changed:
            self._on_triggers_changed()
        return result

    async def _apply_in(self, conn: AsyncConnection, change: JobVersionIn, incoming: IncomingVersion) -> Applied | None:
        locked = await repo.lock_schedule(conn, change.job_id)
        stored = None
        if locked is not None:
            stored = replace(locked.stored, offset=jitter_offset(str(change.job_id), locked.stored.timing[4]))
        plan = plan_change(stored, incoming)
        if plan is None:
            assert stored is not None
            log.info("job_version_ignored", version=change.version, stored_version=stored.job_version)
            return Applied("ignored", stored.state, stored.next_fire_at)
        now = await repo.db_now(conn)
        compiled = self._compile(change, plan)
        offset = compiled.offset if compiled else timedelta(0)
        next_fire_at = plan.next_fire_at(stored, compiled.schedule if compiled else None, now, offset)
        runs_fired = stored.runs_fired if stored else 0
        state = settle_state(plan.state, next_fire_at, runs_fired, incoming.max_runs)
        if state != "active":
            next_fire_at = None
        pause = pause_bookkeeping(stored, state)
        values = self._row_values(change, plan, state, stored, next_fire_at) | {
            "paused_from": pause.paused_from,
            "run_parameters": self._run_parameters(change, compiled),
        }
        if stored is None:
            if not await repo.insert_schedule(conn, {"job_id": change.job_id, **values}):
                return None  # another delivery inserted the job first: decide again on its row
        else:
            await repo.update_schedule(conn, change.job_id, values)
        paused = 0
        if pause.resumed_from is not None and compiled is not None:
            paused = await self._record_paused(conn, change, compiled, pause.resumed_from, now)
        triggers_changed = await repo.replace_triggers(conn, change.job_id, trigger_rows(change.spec))
        if next_fire_at is not None and (stored is None or next_fire_at != stored.next_fire_at):
            await repo.notify_wake(conn, next_fire_at)
        if compiled is not None:
            self._cache.put(change.job_id, compiled)
        elif state != "active":
            self._cache.discard(change.job_id)
        log.info(
            "job_version_applied",
            version=change.version,
            state=state,
            next_fire_at=next_fire_at.isoformat() if next_fire_at else None,
            paused_slots=paused,
        )
        return Applied("applied", state, next_fire_at, paused, triggers_changed)

    async def _record_paused(
        self, conn: AsyncConnection, change: JobVersionIn, compiled: CompiledJob, start: datetime, now: datetime
    ) -> int:
        """Record the slots a pause held back (from its first held slot to now) as ``paused``."""
        slots, truncated = slots_between(compiled.schedule, start, now - compiled.offset, self._max_paused_records)
        if truncated:
            log.warning("paused_slots_truncated", recorded=len(slots), first=start.isoformat())
        return await repo.record_slots(
            conn, change.job_id, change.version, slots, outcome="paused", reason="job paused"
        )

    def _compile(self, change: JobVersionIn, plan: ScheduleChange) -> CompiledJob | None:
        spec = change.spec
        if plan.state != "active" or spec is None or spec.schedule is None:
            return None
        return compile_spec(change.job_id, change.version, spec, plan.anchor)

    @staticmethod
    def _run_parameters(change: JobVersionIn, compiled: CompiledJob | None) -> dict[str, Any] | None:
        """The version's scheduled runs' parameters (None for a job without a schedule, or whose
        scheduled runs could not have valid parameters: it cannot fire)."""
        spec = change.spec
        if spec is None or spec.schedule is None:
            return None
        if compiled is not None:
            return compiled.parameters
        try:  # paused or disabled: kept ready for when it is resumed
            return scheduled_parameters(spec)
        except ScheduleError:
            return None

    @staticmethod
    def _row_values(
        change: JobVersionIn,
        plan: ScheduleChange,
        state: ScheduleState,
        stored: StoredSchedule | None,
        next_fire_at: datetime | None,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "account_id": change.account_id,
            "job_version": change.version,
            "anchor": plan.anchor,
            "state": state,
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
