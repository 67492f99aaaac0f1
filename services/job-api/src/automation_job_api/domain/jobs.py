"""Job definitions as the API takes them, and the checks beyond field types.

:class:`JobDefinition` is the body of ``POST /api/v1/jobs`` and ``PUT /api/v1/jobs/{id}`` (the names
of ARCHITECTURE.md's public resources). Field types and ranges are checked by the model (FastAPI
turns those errors into problem+json naming the field); :func:`check_definition` adds what a model
cannot say: the schedule in its time zone with its window and DST policies, the event triggers, each
step's config for its type, unique step names, a valid parameters schema, and — for a job with a
schedule, whose runs nobody gives parameters to — defaults for every required parameter. Every failure
names the field at fault (``steps.1.config.command``, ``triggers.0.where.1.path``, ``end_at``,
``parameters.properties.site.default``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from automation_contracts import PLATFORM_EVENT_PREFIXES, JobSpec
from automation_contracts.jobs import STEP_NAME_PATTERN, TOPIC_PATTERN, WHERE_PATH_PATTERN
from automation_contracts.primitives import Instant as InstantInRange
from automation_contracts.steps import StepConfig
from automation_core.errors import InvalidInput
from automation_job_api.domain.parameters import check_parameters_schema, check_unattended_defaults
from automation_job_api.domain.steps import check_step_config
from automation_schedule import GapPolicy, OverlapPolicy, ScheduleError, validate_schedule

MAX_STEPS = 50
MAX_JSON_INTEGER = 2**53 - 1
"""The largest integer every JSON parser keeps exact."""
MAX_TRIGGERS = 20
MAX_CONDITIONS = 20
SCHEDULE_FIELDS = {
    "schedule": "schedule",
    "timezone": "timezone",
    "start_at": "start_at",
    "end_at": "end_at",
    "gap": "dst_gap",
    "overlap": "dst_overlap",
}
"""The schedule library's field names, as the job definition calls them."""
_TOPIC = re.compile(TOPIC_PATTERN)
_WHERE_PATH = re.compile(WHERE_PATH_PATTERN)
# Accepts RFC 3339 text from JSON although the model is strict; the platform's range (check_instant).
Instant = Annotated[InstantInRange, Field(strict=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class RetryBackoff(_Strict):
    """Exponential backoff between attempts: ``base_seconds * 2**(n-1)`` capped at ``max_seconds``."""

    base_seconds: Annotated[float, Field(gt=0, le=86400, description="Delay before the first retry.")] = 2
    max_seconds: Annotated[float, Field(gt=0, le=86400, description="Upper bound of any delay.")] = 300


class JobLimits(_Strict):
    """Resource limits of each process of an execution (``setrlimit``); null leaves the executor's own.

    The executor applies the lower of the job's and its own limit (``AUTOMATION_EXECUTOR_MAX_*``): a job
    can tighten its sandbox, never loosen it.
    """

    address_space_bytes: (
        Annotated[
            int,
            Field(ge=64 * 1024 * 1024, le=MAX_JSON_INTEGER, description="RLIMIT_AS: virtual memory (at least 64 MiB)."),
        ]
        | None
    ) = None
    cpu_seconds: (
        Annotated[int, Field(ge=1, le=MAX_JSON_INTEGER, description="RLIMIT_CPU: CPU time of one process.")] | None
    ) = None
    open_files: (
        Annotated[int, Field(ge=16, le=1024 * 1024, description="RLIMIT_NOFILE: open file descriptors.")] | None
    ) = None
    file_size_bytes: (
        Annotated[
            int, Field(ge=1024, le=MAX_JSON_INTEGER, description="RLIMIT_FSIZE: largest file a process may write.")
        ]
        | None
    ) = None


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
    type: Annotated[str, Field(min_length=1, description="Step type (shell, python, http, ssh.exec, ...).")]
    config: Annotated[dict[str, Any], Field(description="Settings of the step type; ${{ ... }} templates kept.")]
    timeout_seconds: (
        Annotated[int, Field(ge=1, le=604800, description="Limit of this step (else the job's).")] | None
    ) = None


class TriggerCondition(_Strict):
    """One condition of an event trigger on a dotted path into the event's data."""

    path: Annotated[str, Field(min_length=1, max_length=500, description="Dotted path from data. (data.site).")]
    op: Annotated[Literal["eq", "in", "exists", "ne"], Field(description="eq, ne, in (a list) or exists.")]
    value: Annotated[Any, Field(description="eq/ne: any JSON value; in: a list; exists: null, true or false.")] = None


class EventTrigger(_Strict):
    """Fire one run per matching event (deduplicated by event id)."""

    type: Annotated[
        str, Field(min_length=1, max_length=255, description="Topic pattern over event types: inventory.*, #.")
    ]
    where: Annotated[list[TriggerCondition], Field(max_length=MAX_CONDITIONS, description="All must hold.")] = []
    max_per_minute: (
        Annotated[int, Field(ge=1, le=10_000, description="Most runs in any 60 s; null: no limit.")] | None
    ) = None


#: Definition fields of the scheduler's policies, stored together (``jobs.policies``) and carried in JobSpec.
SCHEDULE_POLICY_FIELDS = (
    "start_at",
    "end_at",
    "dst_gap",
    "dst_overlap",
    "jitter_seconds",
    "misfire_policy",
    "misfire_cap",
    "starting_deadline_seconds",
    "overlap_policy",
    "max_runs",
    "triggers",
)
#: Definition fields stored in the ``jobs.policies`` JSON column and carried in JobSpec: the scheduler's
#: policies and the execution's resource ``limits``.
POLICY_COLUMN_FIELDS = (*SCHEDULE_POLICY_FIELDS, "limits")


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
    limits: Annotated[
        JobLimits | None, Field(description="Resource limits of the execution's processes; null: the executor's.")
    ] = None
    parameters: Annotated[
        dict[str, Any], Field(description="JSON Schema (2020-12) of the run parameters; defaults apply.")
    ] = Field(default_factory=lambda: {"type": "object"})
    steps: Annotated[list[StepDefinition], Field(min_length=1, max_length=MAX_STEPS)]
    start_at: Annotated[Instant | None, Field(description="No fire before this instant (inclusive).")] = None
    end_at: Annotated[Instant | None, Field(description="No fire after this instant (inclusive).")] = None
    dst_gap: Annotated[Literal["shift", "skip"], Field(description="Spring-forward: shift or skip.")] = "shift"
    dst_overlap: Annotated[
        Literal["first", "last", "both"], Field(description="Fall-back: first, last or both occurrences.")
    ] = "first"
    jitter_seconds: Annotated[float, Field(ge=0, le=3600, description="Fixed per-job publish delay bound.")] = 0
    misfire_policy: Annotated[
        Literal["skip", "run_once", "run_all"], Field(description="Slots missed during downtime.")
    ] = "run_once"
    misfire_cap: Annotated[int, Field(ge=1, le=1000, description="Most runs run_all creates after downtime.")] = 100
    starting_deadline_seconds: (
        Annotated[int, Field(ge=1, le=604800, description="Drop a fire published later than this.")] | None
    ) = None
    overlap_policy: Annotated[
        Literal["allow", "forbid", "replace"], Field(description="A fire while a run is still running.")
    ] = "allow"
    max_runs: Annotated[int, Field(ge=1, description="Complete after this many runs; null: no limit.")] | None = None
    triggers: Annotated[list[EventTrigger], Field(max_length=MAX_TRIGGERS, description="Event triggers.")] = []

    def to_spec(self) -> JobSpec:
        """The definition as the message contract carries it."""
        return JobSpec.model_validate(self.model_dump(mode="json"))


def check_definition(definition: JobDefinition) -> list[StepConfig]:
    """The parsed config of each step; :class:`InvalidInput` naming the field at fault when the
    definition cannot be run."""
    check_timing(definition)
    check_triggers(definition.triggers)
    seen: set[str] = set()
    configs: list[StepConfig] = []
    for index, step in enumerate(definition.steps):
        if step.name in seen:
            raise InvalidInput(
                f"steps.{index}.name: step name {step.name!r} is already used by an earlier step",
                field=f"steps.{index}.name",
            )
        seen.add(step.name)
        configs.append(check_step_config(index, step.type, step.config))
    backoff = definition.retry_backoff
    if backoff.max_seconds < backoff.base_seconds:
        raise InvalidInput(
            "retry_backoff.max_seconds: must not be below base_seconds", field="retry_backoff.max_seconds"
        )
    check_parameters_schema(definition.parameters)
    if definition.schedule is not None:
        check_unattended_defaults(definition.parameters)
    return configs


def check_timing(definition: JobDefinition) -> None:
    """The schedule (cron, ``@every``, macro or one-off) with its zone, window and DST policies."""
    try:
        validate_schedule(
            definition.schedule,
            timezone=definition.timezone,
            start_at=definition.start_at,
            end_at=definition.end_at,
            gap=GapPolicy(definition.dst_gap),
            overlap=OverlapPolicy(definition.dst_overlap),
        )
    except ScheduleError as exc:
        field = SCHEDULE_FIELDS.get(exc.field, "schedule")
        raise InvalidInput(f"{field}: {exc.reason}", field=field) from exc


def check_triggers(triggers: list[EventTrigger]) -> None:
    """Each trigger's topic pattern and ``where`` conditions."""
    for index, trigger in enumerate(triggers):
        field = f"triggers.{index}.type"
        if not _TOPIC.match(trigger.type):
            raise InvalidInput(
                f"{field}: {trigger.type!r} is not a topic pattern: dot-separated words of letters, digits, _ or -,"
                " or * (one word) or # (any words)",
                field=field,
            )
        head = trigger.type.split(".", 1)[0]
        if head in PLATFORM_EVENT_PREFIXES:
            platform = ", ".join(f"{p}.*" for p in sorted(PLATFORM_EVENT_PREFIXES))
            raise InvalidInput(f"{field}: platform events ({platform}) never trigger jobs", field=field)
        for position, condition in enumerate(trigger.where):
            _check_condition(f"triggers.{index}.where.{position}", condition)


def _check_condition(prefix: str, condition: TriggerCondition) -> None:
    if not _WHERE_PATH.match(condition.path):
        raise InvalidInput(
            f"{prefix}.path: {condition.path!r} must be a dotted path into the event's data, starting with"
            " 'data.' (data.site)",
            field=f"{prefix}.path",
        )
    value = condition.value
    if condition.op == "in" and not (isinstance(value, list) and value):
        raise InvalidInput(f"{prefix}.value: op 'in' needs a non-empty list of values", field=f"{prefix}.value")
    if condition.op == "exists" and value is not None and not isinstance(value, bool):
        raise InvalidInput(
            f"{prefix}.value: op 'exists' takes null or true (present) or false (absent)", field=f"{prefix}.value"
        )
