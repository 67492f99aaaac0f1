"""Tables of the ``executor`` schema.

``attempts`` has one row per (execution, attempt): the outcome of an attempt is recorded once, by the
run that holds its current ``run_id`` while it is ``running`` (see :mod:`automation_executor.domain.attempts`
for the state machine). A running attempt holds a lease (``lease_expires_at``) renewed by its
executor's heartbeat; ``request`` keeps the run request while the attempt is unfinished, so any replica
can record it ``lost`` and schedule what follows. ``lost_count`` is, on a lost attempt, the number of
lost attempts of its execution so far (this one included); ``run_count`` counts the starts of an
attempt (more than one when it was handed back at shutdown and run again).

``cancellations`` remembers every ``execution.cancel`` received, so a run requested later (or still
queued, or waiting for a retry) is dropped and recorded ``cancelled`` by whichever replica gets it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, Text, UniqueConstraint, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

import automation_db
from automation_db import schema_metadata
from automation_executor.domain.attempts import ATTEMPT_STATUSES, status_check_sql
from automation_messaging import outbox_table

SCHEMA = "executor"
metadata = schema_metadata(SCHEMA)
__all__ = ["ATTEMPT_STATUSES", "Attempt", "Base", "Cancellation", "attempts", "metadata", "outbox"]


class Base(automation_db.Base):
    """Declarative base of the executor's models."""

    __abstract__ = True
    metadata = metadata


class Attempt(Base):
    """One attempt of an execution."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("execution_id", "attempt"),
        CheckConstraint(status_check_sql(), name="status"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        Index("ix_attempts_running_lease", "lease_expires_at", postgresql_where=text("status = 'running'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    attempt: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    job_version: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    worker_id: Mapped[str] = mapped_column(Text)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    lost_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    run_count: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    requested_at: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    will_retry: Mapped[bool | None]
    next_attempt_at: Mapped[datetime | None]
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class Cancellation(Base):
    """An ``execution.cancel`` received by this executor (any replica)."""

    __tablename__ = "cancellations"

    execution_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


attempts = Attempt.__table__
cancellations = Cancellation.__table__
outbox = outbox_table(metadata)
