"""The messages the scheduler sends: ``run.requested`` (schedule, event and backfill triggers) and the
``execution.cancel`` control of the ``replace`` overlap policy. Both go through the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from automation_contracts import CancelExecution, CloudEvent, JobSpec, RunRequested, Trigger, build_event
from automation_messaging.topology import COMMANDS, CONTROL, RUN_REQUESTED

SOURCE = "/automation/scheduler"
EXECUTION_CANCEL = "execution.cancel"
Outgoing = tuple[CloudEvent, str, str | None]
"""An outbox entry: (event, exchange, routing key)."""


def run_requested(
    *,
    execution_id: uuid.UUID,
    job_id: uuid.UUID,
    account_id: uuid.UUID,
    job_version: int,
    spec: JobSpec,
    parameters: dict[str, Any],
    trigger: Trigger,
    requested_at: datetime,
    scheduled_for: datetime | None = None,
    event: CloudEvent | None = None,
    backfill_id: uuid.UUID | None = None,
) -> Outgoing:
    """A ``run.requested`` command (CloudEvent id = execution id, subject = job id) for the outbox."""
    data = RunRequested(
        execution_id=execution_id,
        job_id=job_id,
        account_id=account_id,
        job_version=job_version,
        trigger=trigger,
        scheduled_for=scheduled_for,
        requested_at=requested_at,
        attempt=1,
        parameters=dict(parameters),
        job=spec,
        event=event,
        backfill_id=backfill_id,
    )
    built = build_event(RUN_REQUESTED, source=SOURCE, data=data, id=str(execution_id), subject=str(job_id))
    return built, COMMANDS, RUN_REQUESTED


def cancel_execution(execution_id: uuid.UUID, reason: str, requested_at: datetime) -> Outgoing:
    """An ``execution.cancel`` control for every executor replica (fanout ``automation.control``)."""
    data = CancelExecution(execution_id=execution_id, reason=reason, requested_at=requested_at)
    built = build_event(EXECUTION_CANCEL, source=SOURCE, data=data, subject=str(execution_id))
    return built, CONTROL, EXECUTION_CANCEL
