"""Step configurations, checked per step type.

A job's steps are stored as given; these models only decide whether a config is acceptable, so
``${{ ... }}`` templates stay as text for the executor to substitute at run time. Types known now:

- ``shell``: ``command`` (argv list of non-empty strings, or a string only with ``"shell": true``),
  ``shell``, ``cwd``, ``env`` (str → str), ``expected_exit_codes`` (default ``[0]``).
- ``http``: ``method`` (default GET), ``url`` (http or https), ``headers``, ``json`` or ``body``,
  ``timeout_seconds``, ``expected_status`` (default: any 2xx).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from automation_contracts.errors import from_validation_error
from automation_core.errors import InvalidInput

TEMPLATE_START = "${{"
NonEmpty = Annotated[str, Field(min_length=1)]


class StepConfig(BaseModel):
    """Base of the per-type configs: strict JSON types, unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class ShellConfig(StepConfig):
    """A process: an argv list, or a ``/bin/sh -c`` string when ``shell`` is true."""

    shell: bool = False
    command: list[NonEmpty] | NonEmpty
    cwd: NonEmpty | None = None
    env: dict[NonEmpty, str] = Field(default_factory=dict)
    expected_exit_codes: Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1)] = [0]

    @field_validator("command")
    @classmethod
    def _string_needs_shell(cls, value: list[str] | str, info: ValidationInfo) -> list[str] | str:
        if isinstance(value, str) and not info.data.get("shell", False):
            raise ValueError('a string command runs only with "shell": true; give an argv list instead')
        if isinstance(value, list) and not value:
            raise ValueError("command needs at least the program to run")
        return value


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpConfig(StepConfig):
    """An HTTP request; the response's status, headers and body become the step output."""

    method: HttpMethod = "GET"
    url: NonEmpty
    headers: dict[NonEmpty, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    expected_status: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value.startswith(TEMPLATE_START):
            return value  # the whole URL comes from a template; the executor checks it at run time
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"}:
            raise ValueError("url must start with http:// or https://")
        if not parts.netloc:
            raise ValueError("url has no host")
        return value


STEP_CONFIGS: dict[str, type[StepConfig]] = {"shell": ShellConfig, "http": HttpConfig}
"""The step types job-api accepts now, and the model of each one's ``config``."""


def check_step_config(index: int, step_type: str, config: dict[str, Any]) -> None:
    """Raise :class:`InvalidInput` naming ``steps.<index>.type`` or ``steps.<index>.config.<path>``."""
    model = STEP_CONFIGS.get(step_type)
    if model is None:
        known = ", ".join(sorted(STEP_CONFIGS))
        field = f"steps.{index}.type"
        raise InvalidInput(f"{field}: unknown step type {step_type!r} (known: {known})", field=field)
    prefix = f"steps.{index}.config"
    try:
        parsed = model.model_validate(config)
    except ValidationError as exc:
        error = from_validation_error(exc, config, prefix)
        reason = error.reason.removeprefix("Value error, ")
        raise InvalidInput(f"{error.path}: {reason}", field=error.path) from exc
    if isinstance(parsed, HttpConfig) and "json" in config and parsed.body is not None:
        raise InvalidInput(f"{prefix}.body: give either json or body, not both", field=f"{prefix}.body")
