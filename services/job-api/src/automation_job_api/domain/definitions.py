"""The body of ``POST``/``PUT /api/v1/jobs`` and the whole check of it.

:class:`JobDefinition` is :class:`automation_job_api.domain.jobs.JobDefinition` (schedule, limits,
parameters, steps) plus the optional job-level ``check`` step (check/perform: the check runs first;
only when its output says ``should_perform: true`` do the steps run, with its ``perform_payload``
readable as ``${{ check.payload.<path> }}``). :func:`validate_job` runs every check of
:func:`~automation_job_api.domain.jobs.check_definition` (schedule, unique step names, each step's
config, backoff, parameters schema and defaults), then checks the check step and every template
against what it may refer to (:mod:`automation_contracts.steps.templates`, the grammar the executor
shares). A template could never be substituted when:

- it does not parse: ``${{`` without ``}}``, or an expression that is not a dotted path of at least
  two names (``${{ parameters }}``, ``${{ parameters.a b }}``);
- its root is not one of ``parameters``, ``steps``, ``event``, ``secrets``, ``check``;
- ``parameters.<name>`` names a parameter the job's ``parameters`` schema does not declare under
  ``properties``;
- ``steps.<name>.output[.<path>]`` names the step itself, a later step or no step (and the ``check``
  step cannot read any step: it runs first);
- ``secrets.<NAME>`` is not exactly a secret name (``^[A-Z][A-Z0-9_]*$``), or appears where its value
  would be published (``event.emit`` configs);
- ``check.payload[.<path>]`` appears in a job without a ``check`` step, or in the check step itself;
- it stands in a ``"shell": true`` or ``ssh.exec`` command where a quoted word is not safe (inside
  quotes, a comment, backquotes, arithmetic, after ``\\`` or ``$``, or in a script with a
  here-document); or in a browser ``evaluate`` action's ``expression`` (JavaScript: refused by the
  step's config check).

The message contract carries ``check`` inside ``JobSpec``, so ``job.*`` events and ``run.requested``
commands give the executor the check step with the steps.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from automation_contracts import JobSpec
from automation_contracts.jobs import STEP_NAME_PATTERN
from automation_contracts.parameters import declared_names
from automation_contracts.steps import TemplateScope
from automation_core.errors import InvalidInput
from automation_job_api.domain.jobs import JobDefinition as BaseJobDefinition
from automation_job_api.domain.jobs import StepDefinition, check_definition
from automation_job_api.domain.steps import check_step, check_step_templates


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
        """The definition as the message contract carries it."""
        return JobSpec.model_validate(self.model_dump(mode="json"))


def validate_job(definition: JobDefinition) -> None:
    """Raise :class:`InvalidInput` naming the field at fault when the definition cannot be run."""
    configs = check_definition(definition)
    names = [step.name for step in definition.steps]
    parameters = declared_names(definition.parameters)
    check = definition.check
    if check is not None:
        if check.name in names:
            raise InvalidInput(
                f"check.name: {check.name!r} is already the name of a step; the check step needs its own",
                field="check.name",
            )
        parsed = check_step("check", check.type, check.config)
        scope = TemplateScope(parameters, step_name=check.name, has_check=True, in_check=True)
        check_step_templates("check", check.config, parsed, scope)
    for index, (step, config) in enumerate(zip(definition.steps, configs, strict=True)):
        scope = TemplateScope(
            parameters, earlier_steps=frozenset(names[:index]), step_name=step.name, has_check=check is not None
        )
        check_step_templates(f"steps.{index}", step.config, config, scope)
