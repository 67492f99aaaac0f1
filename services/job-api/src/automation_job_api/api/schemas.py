"""Request and response bodies of the public API (job definitions live in ``domain.jobs``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from automation_job_api.domain.executions import Status, TriggerName
from automation_job_api.domain.jobs import EventTrigger, JobLimits


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AccountCreate(BaseModel):
    """A new account."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200, description="Unique account name.")]


class AccountOut(_Out):
    """An account."""

    id: uuid.UUID
    name: str
    created_at: datetime


class AccountCreated(AccountOut):
    """A new account and its first API key (shown this once)."""

    api_key: str = Field(description="ak_<key_id>_<secret>; store it now, it is never shown again.")


class AccountList(BaseModel):
    """A page of accounts."""

    items: list[AccountOut]
    next_cursor: str | None


class ApiKeyOut(_Out):
    """An API key, without its secret."""

    id: str = Field(description="The key id (the public half).")
    prefix: str = Field(description="ak_<key_id>: how the key begins.")
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(BaseModel):
    """A new API key (the secret is shown this once)."""

    id: str
    api_key: str = Field(description="ak_<key_id>_<secret>; store it now, it is never shown again.")
    prefix: str
    created_at: datetime


class ApiKeyList(BaseModel):
    """Every key of an account, newest first (revoked ones too); always one page."""

    items: list[ApiKeyOut]
    next_cursor: str | None = None


class TokenOut(BaseModel):
    """A signed JWT every service accepts as ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Lifetime in seconds.")


class RetryBackoffOut(BaseModel):
    """Exponential backoff between attempts."""

    base_seconds: float
    max_seconds: float


class StepOut(BaseModel):
    """One step as stored (templates unsubstituted)."""

    name: str
    type: str
    config: dict[str, Any]
    timeout_seconds: int | None = None


class JobOut(_Out):
    """A job: its definition and bookkeeping."""

    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    description: str | None
    schedule: str | None
    timezone: str
    enabled: bool
    timeout_seconds: int
    retries: int
    retry_backoff: RetryBackoffOut
    priority: int
    max_concurrency: int | None
    limits: JobLimits | None = Field(default=None, description="Resource limits of the execution's processes.")
    parameters: dict[str, Any]
    steps: list[StepOut]
    check: StepOut | None = Field(
        default=None, validation_alias="check_step", description="Runs before the steps (check/perform)."
    )
    start_at: datetime | None = None
    end_at: datetime | None = None
    dst_gap: str = "shift"
    dst_overlap: str = "first"
    jitter_seconds: float = 0
    misfire_policy: str = "run_once"
    misfire_cap: int = 100
    starting_deadline_seconds: int | None = None
    overlap_policy: str = "allow"
    max_runs: int | None = None
    triggers: list[EventTrigger] = Field(default_factory=list, description="Event triggers.")
    version: int = Field(description="1 at creation; grows by one with every change.")

    @model_validator(mode="before")
    @classmethod
    def _spread_policies(cls, value: Any) -> Any:
        """A stored job keeps its scheduler policies and limits in one column; the resource shows them as fields."""
        policies = getattr(value, "policies", None)
        if not isinstance(policies, dict):
            return value
        fields = {name: getattr(value, name) for name in cls.model_fields if hasattr(value, name)}
        fields["check_step"] = getattr(value, "check_step", None)
        return fields | policies

    created_at: datetime
    updated_at: datetime


class JobList(BaseModel):
    """A page of jobs, newest first."""

    items: list[JobOut]
    next_cursor: str | None


class ExecuteRequest(BaseModel):
    """Parameters of a manual run (validated against the job's schema, defaults applied)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)


class ExecuteAccepted(BaseModel):
    """The run is queued."""

    execution_id: uuid.UUID


class ExecutionOut(_Out):
    """An execution (its latest attempt)."""

    id: uuid.UUID
    job_id: uuid.UUID
    status: Status
    attempt: int = Field(description="1-based number of the latest attempt.")
    trigger: TriggerName
    scheduled_for: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    error: str | None
    result: Any = None
    job_version: int | None = Field(description="Job version run (null until the run is queued or started).")
    parameters: dict[str, Any] | None = Field(
        description="Parameters after defaults (null until the run is queued or started)."
    )
    cancel_requested_at: datetime | None = Field(default=None, description="When a cancellation was first asked for.")
    cancel_reason: str | None = Field(default=None, description="The reason given with that cancellation.")
    updated_at: datetime


class ExecutionList(BaseModel):
    """A page of executions, newest first."""

    items: list[ExecutionOut]
    next_cursor: str | None


class CancelRequest(BaseModel):
    """Why the execution is cancelled (copied into ``execution.cancel`` and ``execution.cancelled``)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=1000)] = "cancelled on request"


class CancelAccepted(BaseModel):
    """The cancellation was sent to every executor; the execution ends ``cancelled`` when one stops it."""

    execution_id: uuid.UUID
    status: Status = Field(description="The status when the request was accepted (queued or running).")
    cancel_requested_at: datetime
