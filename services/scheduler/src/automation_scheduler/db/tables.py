"""Tables of the ``scheduler`` schema.

- ``schedules``: one row per job ever seen, keyed by job id; the newest job version's snapshot, its
  parsed-schedule inputs (expression, time zone, anchor) and the next nominal fire time. The partial
  index on ``next_fire_at`` (active rows only) serves both the fire loop's ``min()`` and its due-row claim.
- ``fires``: one row per (job, nominal time) slot with its outcome; the primary key is what makes a slot
  fire at most once across replicas, and serves "newest fires of a job" by a backward index scan.
- ``outbox``: the transactional outbox (``run.requested`` commands).
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

SCHEDULE_STATES = ("active", "paused", "no_schedule", "deleted")
FIRE_OUTCOMES = ("fired", "missed")


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
    next_fire_at: Mapped[datetime | None]
    last_fire_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class FireRow(Base):
    """The recorded outcome of one nominal slot of one job."""

    __tablename__ = "fires"
    __table_args__ = (CheckConstraint(_in("outcome", FIRE_OUTCOMES), name="outcome"),)

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    nominal_time: Mapped[datetime] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(Text)
    job_version: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    fired_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())


schedules = cast(Table, ScheduleRow.__table__)
fires = cast(Table, FireRow.__table__)
outbox = outbox_table(metadata)

__all__ = [
    "FIRE_OUTCOMES",
    "SCHEDULE_STATES",
    "SCHEMA",
    "Base",
    "FireRow",
    "ScheduleRow",
    "fires",
    "metadata",
    "outbox",
    "schedules",
]
