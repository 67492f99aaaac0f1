"""job-api's tables in schema ``job_api``.

- ``accounts``, ``api_keys``: who may call (keys stored as id + sha256 of the secret).
- ``jobs``: the current definition of each job; ``job_versions``: a full snapshot per version
  (kept after a job is deleted, with the deletion as its last version).
- ``executions``, ``execution_logs``: the read model fed by execution events.
- ``dead_letters``: every message dead-lettered anywhere in the platform (moved off ``automation.dead``).
- ``outbox``: messages committed with the state change they announce.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

import automation_db
from automation_db import schema_metadata
from automation_messaging import outbox_table

metadata = schema_metadata("job_api")
outbox = outbox_table(metadata)
JSON = JSONB(none_as_null=True)


class Base(automation_db.Base):
    """Models of schema ``job_api``."""

    __abstract__ = True
    metadata = metadata


class Account(Base):
    """A tenant: owns API keys, jobs and executions."""

    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime]


class ApiKey(Base):
    """An API key of an account: its public id and the hash of its secret."""

    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Account.id, ondelete="CASCADE"))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Job(Base):
    """The current definition of a job."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("account_id", "name"),
        Index(None, "account_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Account.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    schedule: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    retries: Mapped[int] = mapped_column(Integer)
    retry_backoff: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(SmallInteger)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    check_step: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    policies: Mapped[dict[str, Any]] = mapped_column(JSON, server_default=text("'{}'"))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class JobVersion(Base):
    """A job's full definition at one version, and the change that made it."""

    __tablename__ = "job_versions"
    __table_args__ = (CheckConstraint("change IN ('created', 'updated', 'enabled', 'disabled', 'deleted')", "change"),)

    job_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    change: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    check_step: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]


class Execution(Base):
    """One run of a job, as execution events describe it (its latest attempt)."""

    __tablename__ = "executions"
    __table_args__ = (
        Index(None, "account_id", "created_at", "id"),
        Index(None, "job_id", "created_at", "id"),
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled')", "status"),
        CheckConstraint("trigger IN ('schedule', 'manual', 'event', 'backfill')", "trigger"),
        Index(
            "uq_executions_job_id_idempotency_key",
            "job_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID]
    job_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    phase: Mapped[int] = mapped_column(SmallInteger)
    trigger: Mapped[str] = mapped_column(Text)
    job_version: Mapped[int | None] = mapped_column(Integer)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    scheduled_for: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    cancel_requested_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    """A manual run's ``Idempotency-Key``: one execution per key and job."""
    idempotency_fingerprint: Mapped[str | None] = mapped_column(Text)
    """sha256 of the parameters the key was first sent with; the same key with others is refused."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ExecutionLogBatch(Base):
    """One ``execution.log`` batch; (execution, attempt, seq) is unique so a repeat is dropped."""

    __tablename__ = "execution_logs"
    __table_args__ = (UniqueConstraint("execution_id", "attempt", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    execution_id: Mapped[uuid.UUID]
    attempt: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    entries: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    truncated: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime]


class DeadLetter(Base):
    """A message moved off ``automation.dead``: where it was dead-lettered, why, and its bytes.

    ``(message_id, original_queue, dead_lettered_at)`` is unique, so a redelivered dead letter is
    stored once; a letter requeued and dead-lettered again is a new row (a new ``dead_lettered_at``).
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("message_id", "original_queue", "dead_lettered_at"),
        Index(None, "dead_lettered_at", "id"),
        Index(None, "original_queue", "dead_lettered_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(Text)
    routing_key: Mapped[str] = mapped_column(Text)
    original_exchange: Mapped[str] = mapped_column(Text)
    original_queue: Mapped[str] = mapped_column(Text)
    original_routing_key: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str | None] = mapped_column(Text)
    message_type: Mapped[str | None] = mapped_column(Text)
    dead_lettered_at: Mapped[datetime]
    dead_lettered_by: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    requeued_at: Mapped[datetime | None]
    requeue_count: Mapped[int] = mapped_column(Integer)
