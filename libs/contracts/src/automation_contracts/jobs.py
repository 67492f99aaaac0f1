"""Job definitions and the job change events (``job.created``, ``job.updated``, ``job.deleted``)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from automation_contracts.primitives import Contract, JsonObject, Timestamp, Uuid

STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class RetryBackoff(Contract):
    """Exponential backoff: retry n waits ``base_seconds * 2**(n-1)``, capped at ``max_seconds``, with jitter."""

    base_seconds: Annotated[float, Field(gt=0)]
    max_seconds: Annotated[float, Field(gt=0)]


class StepSpec(Contract):
    """One step of a job; ``config`` is kind-specific and checked by the step kind."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=STEP_NAME_PATTERN)]
    type: Annotated[str, Field(min_length=1)]
    config: JsonObject
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None


class JobSpec(Contract):
    """A job definition as carried in job and run messages (schema ``job-spec``)."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    schedule: Annotated[str, Field(min_length=1)] | None = None
    timezone: Annotated[str, Field(min_length=1)] = "UTC"
    enabled: bool
    timeout_seconds: Annotated[int, Field(ge=1, le=604800)]
    retries: Annotated[int, Field(ge=0, le=100)]
    retry_backoff: RetryBackoff
    priority: Annotated[int, Field(ge=0, le=9)]
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    parameters: JsonObject
    steps: Annotated[list[StepSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_step_names(self) -> Self:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"step name {step.name!r} is used twice")
            seen.add(step.name)
        return self


class JobChanged(Contract):
    """``job.created`` and ``job.updated``: the job's full definition at its new version."""

    job_id: Uuid
    account_id: Uuid
    version: Annotated[int, Field(ge=1)]
    changed_at: Timestamp
    job: JobSpec


class JobDeleted(Contract):
    """``job.deleted``: the job is gone and its schedule stops."""

    job_id: Uuid
    account_id: Uuid
    version: Annotated[int, Field(ge=1)]
    deleted_at: Timestamp
