"""Step configurations, checked per step type (the shared step spec of issue 4).

The models and checks are :mod:`automation_contracts.steps`, shared with the executor, so a definition
job-api accepts is one the executor runs. A job's steps are stored as given: the models only decide
whether a config is acceptable, and ``${{ ... }}`` templates stay as text for the executor to substitute
at run time. Secrets are referenced by NAME only: every config field ending in ``_secret`` holds a
secret name (``^[A-Z][A-Z0-9_]*$``), never a value.

This module turns the shared checks' :class:`~automation_contracts.errors.ContractError` into
:class:`~automation_core.errors.InvalidInput` naming the field (``steps.2.config.known_hosts_secret``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automation_contracts.errors import ContractError
from automation_contracts.steps import STEP_CONFIGS, StepConfig, TemplateScope, check_templates, parse_config
from automation_core.errors import InvalidInput

__all__ = ["STEP_CONFIGS", "check_step", "check_step_config", "check_step_templates", "invalid"]


def invalid(error: ContractError) -> InvalidInput:
    """The problem a contract error is for the API: 422 naming its path."""
    return InvalidInput(f"{error.path}: {error.reason}", field=error.path or None)


def check_step(prefix: str, step_type: str, config: Mapping[str, Any]) -> StepConfig:
    """The parsed config of one step; :class:`InvalidInput` naming ``<prefix>.type`` or ``<prefix>.config.<path>``."""
    try:
        return parse_config(prefix, step_type, config)
    except ContractError as exc:
        raise invalid(exc) from exc


def check_step_config(index: int, step_type: str, config: dict[str, Any]) -> StepConfig:
    """The parsed config of ``steps.<index>``; :class:`InvalidInput` naming the field at fault."""
    return check_step(f"steps.{index}", step_type, config)


def check_step_templates(prefix: str, config: Mapping[str, Any], parsed: StepConfig, scope: TemplateScope) -> None:
    """Check every template of a step's config in ``scope``; :class:`InvalidInput` naming ``<prefix>.config.<path>``."""
    try:
        check_templates(prefix, config, parsed, scope)
    except ContractError as exc:
        raise invalid(exc) from exc
