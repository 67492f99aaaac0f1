"""The messages the scheduler sends: ``run.requested`` (schedule, event and backfill triggers) and the
``execution.cancel`` control of the ``replace`` overlap policy. Both go through the outbox."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, TypeAdapter

from automation_contracts import CancelExecution, CloudEvent, JobSpec, RunRequested, Trigger, build_event
from automation_contracts.registry import dataschema_for
from automation_messaging.broker import RawMessage
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


_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)
HOLE_ID = "\x01i\x01"
HOLE_JOB = "\x01j\x01"
HOLE_ACCOUNT = "\x01c\x01"
HOLE_AT = "\x01a\x01"
HOLE_FOR = "\x01f\x01"
_HOLES = (HOLE_ID, HOLE_JOB, HOLE_ACCOUNT, HOLE_AT, HOLE_FOR)


def run_template(*, job_version: int, spec: JobSpec, parameters: dict[str, Any]) -> str | None:
    """The scheduled ``run.requested`` of a job version as compact JSON with holes for what changes per
    slot and per job: execution id, job id, account id, request time and nominal time.

    Rendered once per job version (stored on the schedule row and kept in memory), so a fire costs a few
    string replacements instead of building and validating the message models. A hole is a quoted value
    replaced whole by a control-character marker (``\\x01<letter>\\x01``): JSON escapes control
    characters inside strings, so a marker cannot come from the spec. None when the spec itself holds
    ``\\u0001`` (the markers could then be ambiguous): such a job's messages are built the slow way.
    """
    job = spec.model_dump(mode="json")
    fixed = json.dumps([job, parameters], separators=(",", ":"), ensure_ascii=False)
    if "\\u0001" in fixed:
        return None
    data = {
        "execution_id": HOLE_ID,
        "job_id": HOLE_JOB,
        "account_id": HOLE_ACCOUNT,
        "job_version": job_version,
        "trigger": "schedule",
        "scheduled_for": HOLE_FOR,
        "requested_at": HOLE_AT,
        "attempt": 1,
        "parameters": parameters,
        "job": job,
        "event": None,
        "backfill_id": None,
    }
    envelope = {
        "specversion": "1.0",
        "id": HOLE_ID,
        "source": SOURCE,
        "type": RUN_REQUESTED,
        "time": HOLE_AT,
        "subject": HOLE_JOB,
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(RUN_REQUESTED),
        "data": data,
    }
    text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    for hole in _HOLES:
        text = text.replace(json.dumps(hole), hole)
    return text


def render_run(
    template: str,
    *,
    execution_id: uuid.UUID,
    job_id: uuid.UUID,
    account_id: uuid.UUID,
    scheduled_for: datetime,
    requested_at: datetime,
) -> bytes:
    """Fill a :func:`run_template`: the body of the run of ``scheduled_for``, requested (and its
    CloudEvent timed) at ``requested_at``."""
    return (
        template.replace(HOLE_ID, f'"{execution_id}"')
        .replace(HOLE_JOB, f'"{job_id}"')
        .replace(HOLE_ACCOUNT, f'"{account_id}"')
        .replace(HOLE_AT, _TIMESTAMP.dump_json(requested_at).decode())
        .replace(HOLE_FOR, _TIMESTAMP.dump_json(scheduled_for).decode())
        .encode()
    )


def run_message(body: bytes, execution_id: uuid.UUID, priority: int) -> RawMessage:
    """A scheduled ``run.requested`` ready to publish (AMQP priority = the job's priority)."""
    return RawMessage(
        body=body,
        exchange=COMMANDS,
        routing_key=RUN_REQUESTED,
        message_id=str(execution_id),
        message_type=RUN_REQUESTED,
        priority=priority,
    )
