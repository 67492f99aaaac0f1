"""Job definitions and the job change events (``job.created``, ``job.updated``, ``job.deleted``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from automation_contracts.primitives import Contract, JsonObject, Timestamp, Uuid

STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
TOPIC_PATTERN = r"^(\*|#|[A-Za-z0-9_-]+)(\.(\*|#|[A-Za-z0-9_-]+))*$"
"""An AMQP topic pattern over event types: words, ``*`` (one word) and ``#`` (zero or more words)."""
WHERE_PATH_PATTERN = r"^data(\.[^.]+)+$"
"""A dotted path into an event's data (``data.site``)."""

PLATFORM_EVENT_PREFIXES = frozenset({"job", "execution", "run", "browser"})
"""First words of the event types the platform itself produces; such events never trigger a job."""

DstGap = Literal["shift", "skip"]
DstOverlap = Literal["first", "last", "both"]
MisfirePolicy = Literal["skip", "run_once", "run_all"]
OverlapPolicy = Literal["allow", "forbid", "replace"]
ConditionOp = Literal["eq", "in", "exists", "ne"]


class RetryBackoff(Contract):
    """Exponential backoff: retry n waits ``base_seconds * 2**(n-1)``, capped at ``max_seconds``, with jitter."""

    base_seconds: Annotated[float, Field(gt=0)]
    max_seconds: Annotated[float, Field(gt=0)]


class ResourceLimits(Contract):
    """Per-job resource limits of an execution's processes; None leaves the executor's own limit."""

    address_space_bytes: Annotated[int, Field(ge=64 * 1024 * 1024)] | None = None
    cpu_seconds: Annotated[int, Field(ge=1)] | None = None
    open_files: Annotated[int, Field(ge=16)] | None = None
    file_size_bytes: Annotated[int, Field(ge=1024)] | None = None


class StepSpec(Contract):
    """One step of a job; ``config`` is kind-specific and checked by the step kind."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=STEP_NAME_PATTERN)]
    type: Annotated[str, Field(min_length=1)]
    config: JsonObject
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None


class TriggerCondition(Contract):
    """One condition of an event trigger on a dotted path into the event's data."""

    path: Annotated[str, Field(max_length=500, pattern=WHERE_PATH_PATTERN)]
    op: ConditionOp
    value: Any = None


class EventTrigger(Contract):
    """Fire one run per event whose type matches ``type`` (a topic pattern) and every ``where`` condition."""

    type: Annotated[str, Field(min_length=1, max_length=255, pattern=TOPIC_PATTERN)]
    where: list[TriggerCondition] = []
    max_per_minute: Annotated[int, Field(ge=1)] | None = None


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
    limits: ResourceLimits | None = None
    parameters: JsonObject
    steps: Annotated[list[StepSpec], Field(min_length=1)]
    check: StepSpec | None = None
    start_at: Timestamp | None = None
    end_at: Timestamp | None = None
    dst_gap: DstGap = "shift"
    dst_overlap: DstOverlap = "first"
    jitter_seconds: Annotated[float, Field(ge=0, le=3600)] = 0
    misfire_policy: MisfirePolicy = "run_once"
    misfire_cap: Annotated[int, Field(ge=1, le=1000)] = 100
    starting_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    overlap_policy: OverlapPolicy = "allow"
    max_runs: Annotated[int, Field(ge=1)] | None = None
    triggers: list[EventTrigger] = []

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
