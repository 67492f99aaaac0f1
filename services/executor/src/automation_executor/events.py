"""The messages the executor publishes, built from a run request.

Event ids are derived from the execution, the attempt and the event kind (uuid5), so an outcome that
is ever published twice carries the same id and consumers deduplicate it by id.

A run whose last attempt failed is also sent to ``automation.dlx`` (:func:`dead_letter`): the body is
the run request of the attempt that would come next, so that requeueing the dead letter (job-api's
dead-letter API re-publishes it to ``automation.commands``) runs the job once more as a new attempt.
Its headers are the ones the consumer runner sets when it dead-letters a message.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from automation_contracts import (
    CloudEvent,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionLog,
    ExecutionStarted,
    ExecutionSucceeded,
    LogEntry,
    RunRequested,
    build_event,
)
from automation_executor.domain.outcome import RunOutcome
from automation_messaging import REASON_HEADER
from automation_messaging.topology import COMMANDS, EXECUTOR_RUNS, RUN_REQUESTED

SOURCE = "/automation/executor"
SERVICE = "executor"
EVENT_ID_NAMESPACE = uuid.UUID("0b6f4f0e-5d0a-4f7e-9a54-6f1c0f3d2b71")


def _event_id(request: RunRequested, kind: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{request.execution_id}:{request.attempt}:{kind}"))


def _ids(request: RunRequested) -> dict[str, Any]:
    """The fields that name the run in every execution event."""
    return {
        "execution_id": request.execution_id,
        "job_id": request.job_id,
        "account_id": request.account_id,
        "attempt": request.attempt,
    }


def _subject(request: RunRequested) -> str:
    return str(request.execution_id)


def started_event(request: RunRequested, *, started_at: datetime, worker: str, run_number: int) -> CloudEvent:
    """``execution.started`` (``run_number`` counts the runs of this attempt: 0, then 1 after a lost run, ...)."""
    data = ExecutionStarted(
        **_ids(request),
        started_at=started_at,
        worker=worker,
        trigger=request.trigger,
        scheduled_for=request.scheduled_for,
        backfill_id=request.backfill_id,
        job_version=request.job_version,
        parameters=request.parameters,
        requested_at=request.requested_at,
    )
    return build_event(
        "execution.started",
        source=SOURCE,
        data=data,
        subject=_subject(request),
        id=_event_id(request, f"started:{run_number}"),
    )


def log_event(request: RunRequested, *, seq: int, entries: list[LogEntry], truncated: bool) -> CloudEvent:
    """One ``execution.log`` batch."""
    data = ExecutionLog(
        **_ids(request),
        seq=seq,
        entries=entries,
        truncated=truncated,
    )
    return build_event("execution.log", source=SOURCE, data=data, subject=_subject(request))


def outcome_event(
    request: RunRequested,
    outcome: RunOutcome,
    *,
    started_at: datetime,
    finished_at: datetime,
    next_attempt_at: datetime | None,
) -> CloudEvent:
    """``execution.succeeded``, ``execution.failed`` or ``execution.timed_out``."""
    data: ExecutionSucceeded | ExecutionFailed
    if outcome.succeeded:
        data = ExecutionSucceeded(
            **_ids(request),
            started_at=started_at,
            finished_at=finished_at,
            exit_code=outcome.exit_code,
            result=outcome.outputs,
        )
    else:
        data = ExecutionFailed(
            **_ids(request),
            started_at=started_at,
            finished_at=finished_at,
            exit_code=outcome.exit_code,
            error=outcome.error or outcome.status.replace("_", " "),
            will_retry=next_attempt_at is not None,
            next_attempt_at=next_attempt_at,
            result=outcome.outputs or None,
        )
    return build_event(
        outcome.event_type,
        source=SOURCE,
        data=data,
        subject=_subject(request),
        id=_event_id(request, "outcome"),
    )


def retry_request(request: RunRequested, *, next_attempt_at: datetime) -> CloudEvent:
    """The ``run.requested`` of the next attempt (same execution id; requested for ``next_attempt_at``)."""
    data = request.model_copy(update={"attempt": request.attempt + 1, "requested_at": next_attempt_at})
    return build_event(
        "run.requested",
        source=SOURCE,
        data=data,
        subject=_subject(request),
        id=_event_id(request, "retry"),
    )


def cancelled_event(request: RunRequested, *, finished_at: datetime, reason: str) -> CloudEvent:
    """``execution.cancelled``: the attempt was stopped, or dropped before it started, on request."""
    data = ExecutionCancelled(
        **_ids(request),
        finished_at=finished_at,
        reason=reason,
    )
    return build_event(
        "execution.cancelled",
        source=SOURCE,
        data=data,
        subject=_subject(request),
        id=_event_id(request, "outcome"),
    )


def dead_letter(request: RunRequested, *, reason: str, at: datetime) -> tuple[CloudEvent, dict[str, Any]]:
    """The run request for ``automation.dlx`` after the last attempt failed, and its headers."""
    data = request.model_copy(update={"attempt": request.attempt + 1, "requested_at": at})
    event = build_event(
        RUN_REQUESTED,
        source=SOURCE,
        data=data,
        subject=_subject(request),
        id=_event_id(request, "dead"),
    )
    headers: dict[str, Any] = {
        REASON_HEADER: reason[:2000],
        "x-original-exchange": COMMANDS,
        "x-original-routing-key": RUN_REQUESTED,
        "x-original-queue": EXECUTOR_RUNS,
        "x-dead-lettered-at": at.isoformat(),
        "x-dead-lettered-by": SERVICE,
    }
    return event, headers
