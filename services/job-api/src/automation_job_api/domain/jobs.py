"""Job definitions as the API takes them, and the checks beyond field types.

:class:`JobDefinition` is the body of ``POST /api/v1/jobs`` and ``PUT /api/v1/jobs/{id}`` (the names
of ARCHITECTURE.md's public resources). Field types and ranges are checked by the model (FastAPI
turns those errors into problem+json naming the field); :func:`check_definition` adds what a model
cannot say: the schedule in its time zone, each step's config for its type, unique step names and a
valid parameters schema. Every failure names the field at fault (``steps.1.config.command``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from automation_contracts import JobSpec
from automation_contracts.jobs import STEP_NAME_PATTERN
from automation_core.errors import InvalidInput
from automation_job_api.domain.parameters import check_parameters_schema
from automation_job_api.domain.steps import check_step_config
from automation_schedule import ScheduleError, validate_schedule

MAX_STEPS = 50
SCHEDULE_FIELDS = frozenset({"schedule", "timezone"})


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class RetryBackoff(_Strict):
    """Exponential backoff between attempts: ``base_seconds * 2**(n-1)`` capped at ``max_seconds``."""

    base_seconds: Annotated[float, Field(gt=0, le=86400, description="Delay before the first retry.")] = 2
    max_seconds: Annotated[float, Field(gt=0, le=86400, description="Upper bound of any delay.")] = 300


class StepDefinition(_Strict):
    """One step: a name unique within the job, a type, and the type's config."""

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=STEP_NAME_PATTERN,
            description="Unique within the job; later steps read its output as steps.<name>.output.",
        ),
    ]
    type: Annotated[str, Field(min_length=1, description="Step type: shell or http.")]
    config: Annotated[dict[str, Any], Field(description="Settings of the step type; ${{ ... }} templates kept.")]
    timeout_seconds: (
        Annotated[int, Field(ge=1, le=604800, description="Limit of this step (else the job's).")] | None
    ) = None


class JobDefinition(_Strict):
    """What a job is: schedule, limits, parameters schema and steps."""

    name: Annotated[str, Field(min_length=1, max_length=200, description="Unique per account.")]
    description: Annotated[str, Field(max_length=10_000)] | None = None
    schedule: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=200,
                description="Cron (5 or 6 fields), '@every <duration>', '@hourly' and friends, or null.",
            ),
        ]
        | None
    ) = None
    timezone: Annotated[str, Field(min_length=1, max_length=100, description="IANA time zone.")] = "UTC"
    enabled: bool = True
    timeout_seconds: Annotated[int, Field(ge=1, le=604800, description="Limit of one attempt.")] = 3600
    retries: Annotated[int, Field(ge=0, le=100, description="Retries after the first attempt.")] = 0
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    priority: Annotated[int, Field(ge=0, le=9, description="0 (lowest) to 9 (highest).")] = 5
    max_concurrency: Annotated[int, Field(ge=1, le=10_000, description="Most runs at once; null: no limit.")] | None = (
        None
    )
    parameters: Annotated[
        dict[str, Any], Field(description="JSON Schema (2020-12) of the run parameters; defaults apply.")
    ] = Field(default_factory=lambda: {"type": "object"})
    steps: Annotated[list[StepDefinition], Field(min_length=1, max_length=MAX_STEPS)]

    def to_spec(self) -> JobSpec:
        """The definition as the message contract carries it."""
        return JobSpec.model_validate(self.model_dump(mode="json"))


def check_definition(definition: JobDefinition) -> None:
    """Raise :class:`InvalidInput` naming the field at fault when the definition cannot be run."""
    try:
        validate_schedule(definition.schedule, timezone=definition.timezone)
    except ScheduleError as exc:
        field = exc.field if exc.field in SCHEDULE_FIELDS else "schedule"
        raise InvalidInput(f"{field}: {exc.reason}", field=field) from exc
    seen: set[str] = set()
    for index, step in enumerate(definition.steps):
        if step.name in seen:
            raise InvalidInput(
                f"steps.{index}.name: step name {step.name!r} is already used by an earlier step",
                field=f"steps.{index}.name",
            )
        seen.add(step.name)
        check_step_config(index, step.type, step.config)
    backoff = definition.retry_backoff
    if backoff.max_seconds < backoff.base_seconds:
        raise InvalidInput(
            "retry_backoff.max_seconds: must not be below base_seconds", field="retry_backoff.max_seconds"
        )
    check_parameters_schema(definition.parameters)
