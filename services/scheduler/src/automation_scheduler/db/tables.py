"""Tables of the ``scheduler`` schema.

- ``schedules``: one row per job ever seen, keyed by job id; the newest job version's snapshot, its
  parsed-schedule inputs (expression, time zone, anchor), the next due time and the policy counters
  (runs fired for ``max_runs``, where a pause began). The partial index on ``next_fire_at`` (active rows
  only) serves both the fire loop's ``min()`` and its due-row claim.
- ``fires``: one row per (job, nominal time, trigger) with its outcome; the primary key is what makes a
  slot fire at most once across replicas (``trigger`` keeps a backfill of a slot apart from the slot's
  scheduled outcome), and serves "newest fires of a job" by a backward index scan. A BRIN index on
  ``recorded_at`` serves the retention cleanup at almost no cost to inserts.
- ``running``: executions of each job seen started and not yet finished (execution events), for the
  overlap policy; finished rows stay a while as tombstones against out-of-order events.
- ``triggers`` / ``trigger_bindings``: the event triggers of enabled jobs, and the patterns bound on
  the ``scheduler.trigger-events`` queue.
- ``event_fires``: one row per (job, event id): what an event did to a job (the deduplication key).
- ``backfills`` / ``backfill_runs``: backfill requests and their runs, released under a concurrency cap.
- ``outbox``: the transactional outbox (``run.requested`` commands, ``execution.cancel`` controls).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CheckConstraint, Index, Integer, Table, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

import automation_db
from automation_db import schema_metadata
from automation_messaging import outbox_table

SCHEMA = "scheduler"
metadata = schema_metadata(SCHEMA)

SCHEDULE_STATES = ("active", "paused", "no_schedule", "deleted", "completed")
FIRE_OUTCOMES = ("fired", "skipped", "missed", "coalesced", "paused", "dropped", "backfill")
FIRE_TRIGGERS = ("schedule", "backfill")
EVENT_FIRE_OUTCOMES = ("fired", "skipped", "rate_limited")
BACKFILL_RUN_STATES = ("pending", "released", "succeeded", "failed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(automation_db.Base):
    """Declarative base bound to the ``scheduler`` schema."""

    __abstract__ = True
    metadata = metadata


class ScheduleRow(Base):
    """The scheduler's view of one job."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint(_in("state", SCHEDULE_STATES), name="state"),
        Index(
            "ix_schedules_due",
            "next_fire_at",
            postgresql_where=text("state = 'active' AND next_fire_at IS NOT NULL"),
        ),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    job_version: Mapped[int] = mapped_column(Integer)
    # The JobSpec snapshot of job_version; NULL only for a tombstone of a job deleted before it was seen.
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    expression: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, server_default="UTC")
    anchor: Mapped[datetime]
    enabled: Mapped[bool]
    state: Mapped[str] = mapped_column(Text)
    # The due time of the next slot: its nominal time plus the job's jitter offset.
    next_fire_at: Mapped[datetime | None]
    last_fire_at: Mapped[datetime | None]
    # Scheduled and event-triggered runs fired so far (the max_runs counter).
    runs_fired: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # While paused: the nominal time of the first slot the pause held back.
    paused_from: Mapped[datetime | None]
    # The parameters of this version's scheduled runs, resolved when it was applied; None for a job without
    # a schedule (or whose defaults do not validate), or for a row written before revision 0003.
    run_parameters: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class FireRow(Base):
    """The recorded outcome of one nominal slot of one job (scheduled, or backfilled)."""

    __tablename__ = "fires"
    __table_args__ = (
        CheckConstraint(_in("outcome", FIRE_OUTCOMES), name="outcome"),
        CheckConstraint(_in("trigger", FIRE_TRIGGERS), name="trigger"),
        Index("ix_fires_recorded_at", "recorded_at", postgresql_using="brin"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    nominal_time: Mapped[datetime] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(Text, primary_key=True, server_default="schedule")
    outcome: Mapped[str] = mapped_column(Text)
    job_version: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    fired_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    backfill_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())


class RunningRow(Base):
    """An execution seen started (``finished_at`` NULL) or finished (kept as a tombstone until cleanup)."""

    __tablename__ = "running"

    execution_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    # Past this the run no longer counts as running (its end was never seen: a lost event, a dead worker).
    expires_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class TriggerRow(Base):
    """One event trigger of an enabled job."""

    __tablename__ = "triggers"

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    pattern: Mapped[str] = mapped_column(Text)
    # The pattern's first word when it is a literal (candidate look-up by the event type's first word).
    head: Mapped[str | None] = mapped_column(Text, index=True)
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    max_per_minute: Mapped[int | None] = mapped_column(Integer)


class TriggerBindingRow(Base):
    """A routing pattern bound from ``automation.events`` to ``scheduler.trigger-events``."""

    __tablename__ = "trigger_bindings"

    pattern: Mapped[str] = mapped_column(Text, primary_key=True)
    bound_at: Mapped[datetime] = mapped_column(server_default=func.now())


class EventFireRow(Base):
    """What one event did to one job; the primary key fires at most one run per (job, event id)."""

    __tablename__ = "event_fires"
    __table_args__ = (
        CheckConstraint(_in("outcome", EVENT_FIRE_OUTCOMES), name="outcome"),
        Index("ix_event_fires_job_recent", "job_id", "position", "recorded_at"),
        Index("ix_event_fires_recorded_at", "recorded_at", postgresql_using="brin"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    job_version: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())


class BackfillRow(Base):
    """One backfill request and its progress counters."""

    __tablename__ = "backfills"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    job_version: Mapped[int] = mapped_column(Integer)
    from_time: Mapped[datetime]
    to_time: Mapped[datetime]
    max_concurrency: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    released: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    succeeded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]


class BackfillRunRow(Base):
    """One run of a backfill: pending until released (published), then finished by its execution events."""

    __tablename__ = "backfill_runs"
    __table_args__ = (
        CheckConstraint(_in("state", BACKFILL_RUN_STATES), name="state"),
        Index("ix_backfill_runs_queue", "backfill_id", "state", "nominal_time"),
    )

    execution_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    backfill_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    nominal_time: Mapped[datetime]
    state: Mapped[str] = mapped_column(Text)
    released_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


schedules = cast(Table, ScheduleRow.__table__)
fires = cast(Table, FireRow.__table__)
running = cast(Table, RunningRow.__table__)
triggers = cast(Table, TriggerRow.__table__)
trigger_bindings = cast(Table, TriggerBindingRow.__table__)
event_fires = cast(Table, EventFireRow.__table__)
backfills = cast(Table, BackfillRow.__table__)
backfill_runs = cast(Table, BackfillRunRow.__table__)
outbox = outbox_table(metadata)

__all__ = [
    "BACKFILL_RUN_STATES",
    "EVENT_FIRE_OUTCOMES",
    "FIRE_OUTCOMES",
    "FIRE_TRIGGERS",
    "SCHEDULE_STATES",
    "SCHEMA",
    "Base",
    "FireRow",
    "ScheduleRow",
    "backfill_runs",
    "backfills",
    "event_fires",
    "fires",
    "metadata",
    "outbox",
    "running",
    "schedules",
    "trigger_bindings",
    "triggers",
]
