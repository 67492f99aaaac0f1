"""The body of ``POST``/``PUT /api/v1/jobs`` and the whole check of it.

:class:`JobDefinition` is :class:`automation_job_api.domain.jobs.JobDefinition` (schedule, limits,
parameters, steps) plus the optional job-level ``check`` step (check/perform: the check runs first;
only when its output says ``should_perform: true`` do the steps run, with its ``perform_payload``
readable as ``${{ check.payload.<path> }}``). :func:`validate_job` runs every check of
:func:`~automation_job_api.domain.jobs.check_definition` (schedule, unique step names, each step's
config, backoff, parameters schema), then checks the check step and every template against what it
may refer to (:mod:`automation_job_api.domain.templates`).

The message contract carries ``check`` inside ``JobSpec`` once ``JobSpec`` has that field
(:data:`CONTRACT_CARRIES_CHECK`); until then a job with a check step is stored and versioned but
cannot be run, because an executor would run its steps without the check.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from automation_contracts import JobSpec
from automation_contracts.jobs import STEP_NAME_PATTERN
from automation_core.errors import InvalidInput
from automation_job_api.domain.jobs import JobDefinition as BaseJobDefinition
from automation_job_api.domain.jobs import StepDefinition, check_definition
from automation_job_api.domain.steps import check_step, secrets_allowed
from automation_job_api.domain.templates import TemplateScope, check_config_templates, declared_parameters

CONTRACT_CARRIES_CHECK = "check" in JobSpec.model_fields
"""Whether ``JobSpec`` (and so ``job.*`` and ``run.requested``) carries the check step."""


class CheckDefinition(StepDefinition):
    """The check step: a step of any type whose ``name`` defaults to ``check``."""

    name: Annotated[
        str,
        Field(min_length=1, max_length=100, pattern=STEP_NAME_PATTERN, description="Its name in logs and results."),
    ] = "check"


class JobDefinition(BaseJobDefinition):
    """A job definition: schedule, limits, parameters schema, an optional check step and the steps.

    (It keeps the base's name: it is the API's ``JobDefinition``, in the OpenAPI document too.)
    """

    check: Annotated[
        CheckDefinition | None,
        Field(
            description="Runs before the steps; they run only when its output has should_perform: true, and read"
            " its perform_payload as ${{ check.payload.<path> }}."
        ),
    ] = None

    def to_spec(self) -> JobSpec:
        """The definition as the message contract carries it (``check`` only once the contract has it)."""
        dumped = self.model_dump(mode="json")
        check = dumped.pop("check")
        if CONTRACT_CARRIES_CHECK:
            dumped["check"] = check
        return JobSpec.model_validate(dumped)


def validate_job(definition: JobDefinition) -> None:
    """Raise :class:`InvalidInput` naming the field at fault when the definition cannot be run."""
    check_definition(definition)
    names = [step.name for step in definition.steps]
    parameters = declared_parameters(definition.parameters)
    check = definition.check
    if check is not None:
        if check.name in names:
            raise InvalidInput(
                f"check.name: {check.name!r} is already the name of a step; the check step needs its own",
                field="check.name",
            )
        check_step("check", check.type, check.config)
        scope = TemplateScope(
            parameters, step_name=check.name, has_check=True, in_check=True, secrets_allowed=secrets_allowed(check.type)
        )
        check_config_templates("check", check.config, scope)
    for index, step in enumerate(definition.steps):
        scope = TemplateScope(
            parameters,
            earlier_steps=frozenset(names[:index]),
            step_name=step.name,
            has_check=check is not None,
            secrets_allowed=secrets_allowed(step.type),
        )
        check_config_templates(f"steps.{index}", step.config, scope)
