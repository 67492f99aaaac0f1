"""Tables of the ``executor`` schema.

``attempts`` has one row per (execution, attempt): the outcome of an attempt is recorded once, by the
run that holds its current ``run_id``. ``lost_count`` counts the runs of the attempt that were lost
(found still ``running`` when the request was delivered again after an executor vanished) and run again.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, Text, UniqueConstraint, Uuid, func, text
from sqlalchemy.orm import Mapped, mapped_column

import automation_db
from automation_db import schema_metadata
from automation_messaging import outbox_table

SCHEMA = "executor"
metadata = schema_metadata(SCHEMA)
ATTEMPT_STATUSES = ("running", "succeeded", "failed", "timed_out", "lost")


class Base(automation_db.Base):
    """Declarative base of the executor's models."""

    __abstract__ = True
    metadata = metadata


class Attempt(Base):
    """One attempt of an execution."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("execution_id", "attempt"),
        CheckConstraint("status IN ('running', 'succeeded', 'failed', 'timed_out', 'lost')", name="status"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
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
    requested_at: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    will_retry: Mapped[bool | None]
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


attempts = Attempt.__table__
outbox = outbox_table(metadata)
