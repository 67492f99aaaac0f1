"""Step configurations, checked per step type (the shared step-type spec of issue 4).

A job's steps are stored as given; these models only decide whether a config is acceptable, so
``${{ ... }}`` templates stay as text for the executor to substitute at run time (what templates may
refer to is :mod:`automation_job_api.domain.templates`). Secrets are referenced by NAME only: every
config field ending in ``_secret`` holds a secret name (``^[A-Z][A-Z0-9_]*$``), never a value.

Local types (here): ``shell``, ``python``, ``http``, ``event.emit``; remote ones: ``ssh.exec``,
``sftp.upload``, ``sftp.download``, ``winrm.exec``, ``winrm.copy``
(:mod:`~automation_job_api.domain.remote_steps`); ``browser``
(:mod:`~automation_job_api.domain.browser_step`).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, field_validator

from automation_contracts import EVENT_MODELS, PLATFORM_EVENT_PREFIXES
from automation_contracts.errors import from_validation_error
from automation_contracts.primitives import conforms
from automation_core.errors import InvalidInput
from automation_job_api.domain.browser_step import BrowserConfig
from automation_job_api.domain.remote_steps import (
    SftpDownloadConfig,
    SftpUploadConfig,
    SshExecConfig,
    WinrmCopyConfig,
    WinrmExecConfig,
)
from automation_job_api.domain.step_base import (
    EnvName,
    ExitCodes,
    NonEmpty,
    RelativePath,
    StepConfig,
    check_url,
)
from automation_job_api.domain.templates import SECRET_NAME, contains_template

MAX_BODY_BYTES = 64 * 1024 * 1024
HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")


class ShellConfig(StepConfig):
    """A process: an argv list, or a ``/bin/sh -c`` string when ``shell`` is true; optionally sandboxed."""

    shell: bool = False
    command: list[NonEmpty] | NonEmpty
    cwd: RelativePath | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    expected_exit_codes: ExitCodes = [0]
    sandbox: Literal["none", "bubblewrap"] = "none"
    network: bool = True

    @field_validator("command")
    @classmethod
    def _string_needs_shell(cls, value: list[str] | str, info: ValidationInfo) -> list[str] | str:
        shell = info.data.get("shell", False)
        if isinstance(value, str) and not shell:
            raise ValueError('a string command runs only with "shell": true; give an argv list instead')
        if isinstance(value, list) and not value:
            raise ValueError("command needs at least the program to run")
        if isinstance(value, list) and shell:
            raise ValueError('"shell": true takes the command as one string')
        return value

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.network and self.sandbox != "bubblewrap":
            yield "network", 'false needs "sandbox": "bubblewrap" (only the sandbox can take the network away)'


def _handler(value: str) -> str:
    if not HANDLER.match(value):
        raise ValueError('handler must be "package.module:function"')
    return value


class PythonConfig(StepConfig):
    """A handler declared in an installed module's manifest, called with a context and ``args``."""

    handler: Annotated[str, AfterValidator(_handler)]
    args: dict[str, Any] = Field(default_factory=dict)

    def problems(self) -> Iterator[tuple[str, str]]:
        for name, value in self.args.items():
            if not name.isidentifier() or keyword.iskeyword(name):
                yield f"args.{name}", f"{name!r} is not a Python keyword argument name"
            elif name == "ctx":
                yield f"args.{name}", "ctx is the context the executor passes as first argument"
            elif name.endswith("_secret") and not (isinstance(value, str) and SECRET_NAME.match(value)):
                yield f"args.{name}", "an argument ending in _secret must be the NAME of a secret, never its value"


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
    max_body_bytes: Annotated[int, Field(ge=1, le=MAX_BODY_BYTES)] | None = None
    follow_redirects: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value, frozenset({"http", "https"}))


def _event_type(value: str) -> str:
    if not EVENT_TYPE.match(value) or len(value) > 255:
        raise ValueError("must be a routing key: dot-separated words of letters, digits, _ and - (no * or #)")
    if value in EVENT_MODELS or value.split(".", 1)[0] in PLATFORM_EVENT_PREFIXES:
        reserved = ", ".join(sorted(prefix + ".*" for prefix in PLATFORM_EVENT_PREFIXES))
        raise ValueError(f"{value!r} is a platform event type; {reserved} are reserved")
    return value


def _source(value: str) -> str:
    if not contains_template(value) and not conforms(value, "uri-reference"):
        raise ValueError("must be a URI-reference, e.g. /inventory/sync")
    return value


class EventEmitConfig(StepConfig):
    """Publish one event to ``automation.events`` (routing key = ``type``)."""

    SECRETS_ALLOWED: ClassVar[bool] = False

    type: Annotated[str, AfterValidator(_event_type)]
    source: Annotated[str, Field(min_length=1), AfterValidator(_source)] | None = None
    subject: NonEmpty | None = None
    data: Any = None


STEP_CONFIGS: dict[str, type[StepConfig]] = {
    "shell": ShellConfig,
    "python": PythonConfig,
    "http": HttpConfig,
    "ssh.exec": SshExecConfig,
    "sftp.upload": SftpUploadConfig,
    "sftp.download": SftpDownloadConfig,
    "winrm.exec": WinrmExecConfig,
    "winrm.copy": WinrmCopyConfig,
    "browser": BrowserConfig,
    "event.emit": EventEmitConfig,
}
"""The step types job-api accepts, and the model of each one's ``config``."""


def _field_names(model: type[StepConfig]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def check_step(prefix: str, step_type: str, config: Mapping[str, Any]) -> StepConfig:
    """The parsed config of one step; :class:`InvalidInput` naming ``<prefix>.type`` or ``<prefix>.config.<path>``."""
    model = STEP_CONFIGS.get(step_type)
    if model is None:
        known = ", ".join(sorted(STEP_CONFIGS))
        field = f"{prefix}.type"
        raise InvalidInput(f"{field}: unknown step type {step_type!r} (known: {known})", field=field)
    where = f"{prefix}.config"
    fields = _field_names(model)
    for key in config:
        if key not in fields and f"{key}_secret" in fields:
            field = f"{where}.{key}"
            raise InvalidInput(
                f"{field}: secrets are referenced by name: give {key}_secret, the NAME of a secret, never its value",
                field=field,
            )
    try:
        parsed = model.model_validate(dict(config))
    except ValidationError as exc:
        error = from_validation_error(exc, dict(config), where)
        reason = error.reason.removeprefix("Value error, ")
        raise InvalidInput(f"{error.path}: {reason}", field=error.path) from exc
    if isinstance(parsed, HttpConfig) and "json" in config and parsed.body is not None:
        raise InvalidInput(f"{where}.body: give either json or body, not both", field=f"{where}.body")
    for path, message in parsed.problems():
        field = f"{where}.{path}"
        raise InvalidInput(f"{field}: {message}", field=field)
    return parsed


def check_step_config(index: int, step_type: str, config: dict[str, Any]) -> None:
    """Raise :class:`InvalidInput` naming ``steps.<index>.type`` or ``steps.<index>.config.<path>``."""
    check_step(f"steps.{index}", step_type, config)


def secrets_allowed(step_type: str) -> bool:
    """Whether ``${{ secrets.* }}`` may appear in this step type's config."""
    model = STEP_CONFIGS.get(step_type)
    return model.SECRETS_ALLOWED if model is not None else True
