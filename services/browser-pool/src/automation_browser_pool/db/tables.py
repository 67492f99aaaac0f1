"""Tables of the ``browser_pool`` schema.

- ``tasks``: one row per answered task (its id is the task's ``task_id``, so a redelivered task is
  answered from the row instead of being run twice), with what the reply carried.
- ``artifacts``: screenshots and PDFs, bytes included, deleted with their task or by the retention
  cleanup.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Double, ForeignKey, Integer, LargeBinary, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

import automation_db
from automation_db import schema_metadata

metadata = schema_metadata("browser_pool")


class Base(automation_db.Base):
    """Models of the ``browser_pool`` schema."""

    __abstract__ = True
    metadata = metadata


class TaskRow(Base):
    """A task that was run (or refused) and answered."""

    __tablename__ = "tasks"
    __table_args__ = (CheckConstraint("status IN ('ok', 'error')", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    status: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    action_count: Mapped[int] = mapped_column(Integer)
    duration_seconds: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class ArtifactRow(Base):
    """A screenshot or PDF a task produced."""

    __tablename__ = "artifacts"
    __table_args__ = (
        CheckConstraint("kind IN ('screenshot', 'pdf')", name="kind"),
        CheckConstraint("size_bytes >= 0", name="size_bytes"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey(TaskRow.id, ondelete="CASCADE"), index=True)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    action_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Text)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
