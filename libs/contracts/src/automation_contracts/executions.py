"""Run requests, execution lifecycle events and the cancel command."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from automation_contracts.envelope import CloudEvent
from automation_contracts.jobs import JobSpec
from automation_contracts.primitives import Contract, JsonObject, Timestamp, Uuid

Trigger = Literal["schedule", "manual", "event", "backfill"]
LogStream = Literal["stdout", "stderr", "system"]
Attempt = Annotated[int, Field(ge=1)]


class RunRequested(Contract):
    """``run.requested``: run a job once; a redelivery or retry keeps the execution id."""

    execution_id: Uuid
    job_id: Uuid
    account_id: Uuid
    job_version: Annotated[int, Field(ge=1)]
    trigger: Trigger
    scheduled_for: Timestamp | None = None
    requested_at: Timestamp
    attempt: Attempt
    parameters: JsonObject
    job: JobSpec
    event: CloudEvent | None = None
    backfill_id: Uuid | None = None


class ExecutionStarted(Contract):
    """``execution.started``: an executor replica began an attempt."""

    execution_id: Uuid
    job_id: Uuid
    account_id: Uuid
    attempt: Attempt
    started_at: Timestamp
    worker: Annotated[str, Field(min_length=1)]
    trigger: Trigger | None = None
    scheduled_for: Timestamp | None = None
    backfill_id: Uuid | None = None
    job_version: Annotated[int, Field(ge=1)] | None = None
    parameters: JsonObject | None = None
    requested_at: Timestamp | None = None


class LogEntry(Contract):
    """One log line; ``step`` is None for lines outside any step."""

    ts: Timestamp
    stream: LogStream
    step: str | None = None
    text: str


class ExecutionLog(Contract):
    """``execution.log``: a batch of log lines; ``seq`` orders the batches of an attempt."""

    execution_id: Uuid
    job_id: Uuid
    account_id: Uuid
    attempt: Attempt
    seq: Annotated[int, Field(ge=0)]
    entries: Annotated[list[LogEntry], Field(min_length=1)]
    truncated: bool


class ExecutionSucceeded(Contract):
    """``execution.succeeded``: the execution is done, successfully."""

    execution_id: Uuid
    job_id: Uuid
    account_id: Uuid
    attempt: Attempt
    started_at: Timestamp
    finished_at: Timestamp
    exit_code: int | None = None
    result: Any = None


class ExecutionFailed(Contract):
    """``execution.failed`` and ``execution.timed_out``: an attempt ended badly; ``will_retry`` says what follows."""

    execution_id: Uuid
    job_id: Uuid
    account_id: Uuid
    attempt: Attempt
    started_at: Timestamp | None = None
    finished_at: Timestamp
    exit_code: int | None = None
    error: Annotated[str, Field(min_length=1)]
    will_retry: bool
    next_attempt_at: Timestamp | None = None
    result: Any = None


class ExecutionCancelled(Contract):
    """``execution.cancelled``: the execution was stopped on request; it is done."""

    execution_id: Uuid
    job_id: Uuid
    account_id: Uuid
    attempt: Attempt
    finished_at: Timestamp
    reason: str


class CancelExecution(Contract):
    """``execution.cancel``: the control command broadcast to every executor replica."""

    execution_id: Uuid
    reason: str
    requested_at: Timestamp
