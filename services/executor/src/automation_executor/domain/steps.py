"""Step kinds and their configuration, checked before anything runs.

A job's steps arrive as ``{"name", "type", "config", "timeout_seconds"}``; :func:`parse_steps` turns
them into :class:`ParsedStep` objects with a typed config, or raises :class:`StepConfigError` naming the
field at fault (``steps.1.config.command``). It also checks every template: its syntax, its namespace,
and that ``steps.<name>`` refers to an earlier step. Kinds run by this executor: ``shell`` and ``http``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from automation_executor.domain.templates import TemplateError, check_shell_script, iter_strings, references

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_HTTP_TIMEOUT_SECONDS = 30.0
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class StepConfigError(ValueError):
    """A step cannot run as configured; ``field`` is the dotted path of the fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.message = message
        self.field = field


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ShellConfig(_Config):
    """``shell``: an argv list, or a string run by ``/bin/sh -c`` only with ``"shell": true``."""

    command: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | Annotated[str, Field(min_length=1)]
    )
    shell: bool = False
    cwd: Annotated[str, Field(min_length=1)] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    expected_exit_codes: Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1)] = [0]
    sandbox: Literal["none", "bubblewrap"] = "none"
    network: bool = True

    @model_validator(mode="after")
    def _command_matches_shell(self) -> Self:
        if isinstance(self.command, str) and not self.shell:
            raise ValueError('a string command needs "shell": true; give an argv list otherwise')
        if isinstance(self.command, list) and self.shell:
            raise ValueError('"shell": true takes the command as one string')
        if self.sandbox != "none" or not self.network:
            raise ValueError(
                "this executor cannot sandbox commands (bubblewrap) or take their network away;"
                ' run the step with "sandbox": "none" and "network": true'
            )
        return self

    @field_validator("cwd")
    @classmethod
    def _inside_workdir(cls, cwd: str | None) -> str | None:
        if cwd is not None and (cwd.startswith(("/", "~")) or ".." in PurePosixPath(cwd).parts):
            raise ValueError("must be a path inside the execution's working directory (relative, no '..')")
        return cwd

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return env


class HttpConfig(_Config):
    """``http``: one request; the response's status, headers and body become the step output."""

    method: str = "GET"
    url: Annotated[str, Field(min_length=1)]
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    expected_status: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] | None = None
    max_body_bytes: Annotated[int, Field(ge=1, le=64 * 1024 * 1024)] | None = None
    follow_redirects: bool = False

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        upper = method.upper()
        if upper not in HTTP_METHODS:
            raise ValueError(f"method must be one of {', '.join(sorted(HTTP_METHODS))}")
        return upper

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if self.json_body is not None and self.body is not None:
            raise ValueError('give "json" or "body", not both')
        return self

    @property
    def timeout(self) -> float:
        """The request timeout in seconds (default 30)."""
        return self.timeout_seconds if self.timeout_seconds is not None else DEFAULT_HTTP_TIMEOUT_SECONDS

    def status_expected(self, status: int) -> bool:
        """Whether ``status`` counts as success (default: any 2xx)."""
        if self.expected_status is None:
            return 200 <= status < 300
        return status in self.expected_status


StepKind = Literal["shell", "http"]
CONFIG_MODELS: Mapping[str, type[_Config]] = {"shell": ShellConfig, "http": HttpConfig}


@dataclass(frozen=True, slots=True)
class ParsedStep:
    """A step whose config was checked."""

    index: int
    name: str
    kind: StepKind
    config: ShellConfig | HttpConfig
    timeout_seconds: int | None = None


def parse_step(index: int, step: Mapping[str, Any], earlier: Iterable[str] = ()) -> ParsedStep:
    """Check one step (``earlier``: names of the steps before it)."""
    prefix = f"steps.{index}"
    name = str(step.get("name", ""))
    kind = step.get("type")
    model = CONFIG_MODELS.get(str(kind))
    if model is None:
        supported = ", ".join(CONFIG_MODELS)
        raise StepConfigError(f"step type {kind!r} is not supported by this executor (supported: {supported})", prefix)
    raw = step.get("config")
    if not isinstance(raw, Mapping):
        raise StepConfigError("must be an object", f"{prefix}.config")
    try:
        config = model.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("list[", "str", "function-")))
        field = f"{prefix}.config" + (f".{loc}" if loc else "")
        raise StepConfigError(str(first["msg"]).removeprefix("Value error, "), field) from exc
    assert isinstance(config, ShellConfig | HttpConfig)
    _check_templates(prefix, config, set(earlier))
    timeout = step.get("timeout_seconds")
    return ParsedStep(
        index=index,
        name=name,
        kind="shell" if isinstance(config, ShellConfig) else "http",
        config=config,
        timeout_seconds=timeout if isinstance(timeout, int) else None,
    )


def parse_steps(steps: Sequence[Mapping[str, Any]]) -> list[ParsedStep]:
    """Check every step of a job, in order."""
    parsed: list[ParsedStep] = []
    for index, step in enumerate(steps):
        parsed.append(parse_step(index, step, [p.name for p in parsed]))
    return parsed


def _check_templates(prefix: str, config: ShellConfig | HttpConfig, earlier: set[str]) -> None:
    for field, text in _templated_fields(config):
        try:
            later = [parts[1] for parts in references(text) if parts[0] == "steps" and parts[1] not in earlier]
            if field == "command" and isinstance(config, ShellConfig) and config.shell:
                check_shell_script(text)
        except TemplateError as exc:
            raise StepConfigError(str(exc), f"{prefix}.config.{field}") from exc
        if later:
            raise StepConfigError(f"step {later[0]!r} is not an earlier step of this job", f"{prefix}.config.{field}")


def _templated_fields(config: ShellConfig | HttpConfig) -> Iterable[tuple[str, str]]:
    """(field path, text) of every string where templates are substituted."""
    if isinstance(config, ShellConfig):
        if isinstance(config.command, str):
            yield "command", config.command
        else:
            yield from ((f"command.{i}", arg) for i, arg in enumerate(config.command))
        yield from ((f"env.{k}", v) for k, v in config.env.items())
        return
    yield "url", config.url
    yield from ((f"headers.{k}", v) for k, v in config.headers.items())
    if config.body is not None:
        yield "body", config.body
    yield from (("json", text) for text in iter_strings(config.json_body))
