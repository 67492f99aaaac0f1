"""The messages job-api publishes, built from its rows, and how they enter the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from automation_contracts import (
    CancelExecution,
    CloudEvent,
    JobChanged,
    JobDeleted,
    JobSpec,
    RunRequested,
    build_event,
    validate_event,
)
from automation_job_api.db.tables import Job, outbox
from automation_messaging import enqueue
from automation_messaging.topology import COMMANDS, CONTROL, EVENTS, RUN_REQUESTED

SOURCE = "/automation/job-api"
EXECUTION_CANCEL = "execution.cancel"


def job_spec(job: Job) -> JobSpec:
    """The job's current definition as the contracts carry it (its check step included)."""
    return JobSpec.model_validate(
        {
            "name": job.name,
            "description": job.description,
            "schedule": job.schedule,
            "timezone": job.timezone,
            "enabled": job.enabled,
            "timeout_seconds": job.timeout_seconds,
            "retries": job.retries,
            "retry_backoff": job.retry_backoff,
            "priority": job.priority,
            "max_concurrency": job.max_concurrency,
            "parameters": job.parameters,
            "steps": job.steps,
            **(job.policies or {}),
            "check": job.check_step,
        }
    )


def job_changed(event_type: str, job: Job, spec: JobSpec, at: datetime) -> CloudEvent:
    """``job.created`` or ``job.updated`` at the job's current version."""
    data = JobChanged(job_id=job.id, account_id=job.account_id, version=job.version, changed_at=at, job=spec)
    return build_event(event_type, source=SOURCE, data=data, subject=str(job.id))


def job_deleted(job: Job, version: int, at: datetime) -> CloudEvent:
    """``job.deleted`` recorded at ``version``."""
    data = JobDeleted(job_id=job.id, account_id=job.account_id, version=version, deleted_at=at)
    return build_event("job.deleted", source=SOURCE, data=data, subject=str(job.id))


def run_requested(
    execution_id: uuid.UUID, job: Job, spec: JobSpec, parameters: dict[str, Any], at: datetime
) -> CloudEvent:
    """``run.requested`` for a manual run: attempt 1 of the job's current version."""
    data = RunRequested(
        execution_id=execution_id,
        job_id=job.id,
        account_id=job.account_id,
        job_version=job.version,
        trigger="manual",
        requested_at=at,
        attempt=1,
        parameters=parameters,
        job=spec,
    )
    return build_event("run.requested", source=SOURCE, data=data, subject=str(execution_id))


def cancel_requested(execution_id: uuid.UUID, reason: str, at: datetime) -> CloudEvent:
    """``execution.cancel``: the control command every executor replica receives."""
    data = CancelExecution(execution_id=execution_id, reason=reason, requested_at=at)
    return build_event(EXECUTION_CANCEL, source=SOURCE, data=data, subject=str(execution_id))


async def publish_event(session: AsyncSession, event: CloudEvent) -> None:
    """Add a domain event to the outbox (exchange ``automation.events``, routing key = its type)."""
    validate_event(event)
    await enqueue(session, outbox, event, exchange=EVENTS)


async def publish_command(session: AsyncSession, event: CloudEvent) -> None:
    """Add ``run.requested`` to the outbox (exchange ``automation.commands``)."""
    validate_event(event)
    await enqueue(session, outbox, event, exchange=COMMANDS, routing_key=RUN_REQUESTED)


async def publish_control(session: AsyncSession, event: CloudEvent) -> None:
    """Add a control command to the outbox (fanout exchange ``automation.control``, routing key = its type)."""
    validate_event(event)
    await enqueue(session, outbox, event, exchange=CONTROL)
