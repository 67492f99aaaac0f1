"""Config models of the steps that run on the executor's machine: ``shell``, ``http``, ``python``,
``event.emit`` and ``browser`` (remote ones are in :mod:`automation_executor.domain.remote_configs`).

Each model checks field types and ranges; checks that span fields are :meth:`StepConfigBase.problems`,
so each failure still names one field. The models agree with job-api's (the shared step spec), so a
definition job-api accepts is one the executor runs.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from automation_executor.domain.templates import SECRET_NAME, TEMPLATE

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
DEFAULT_HTTP_TIMEOUT_SECONDS = 30.0
DEFAULT_BROWSER_TIMEOUT_SECONDS = 30.0
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TEMPLATE_START = "${{"


class StepConfigBase(BaseModel):
    """Base of the per-type configs: unknown keys refused; :meth:`problems` for checks across fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    SECRETS_ALLOWED: ClassVar[bool] = True
    """Whether ``${{ secrets.* }}`` may appear (False where the config is published)."""

    def problems(self) -> Iterator[tuple[str, str]]:
        """``(field, message)`` for every check across fields that fails (none by default)."""
        return iter(())

    def secret_fields(self) -> Iterator[str]:
        """The secret NAMES given in ``*_secret`` fields."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_secret") and isinstance(value, str):
                yield value


def _secret_name(value: str) -> str:
    if not SECRET_NAME.match(value):
        raise ValueError(
            "must be the NAME of a secret (capital letters, digits and _, starting with a letter, e.g. DB_PASSWORD),"
            " never the secret itself"
        )
    return value


def _relative_path(value: str) -> str:
    if value.startswith(("/", "\\", "~")) or PureWindowsPath(value).drive:
        raise ValueError("must be a path inside the execution's working directory (relative, no '..')")
    if ".." in PurePosixPath(value.replace("\\", "/")).parts:
        raise ValueError("must be a path inside the execution's working directory (relative, no '..')")
    return value


SecretName = Annotated[str, AfterValidator(_secret_name)]
"""A secret referenced by name (``^[A-Z][A-Z0-9_]*$``); the executor resolves it."""
RelativePath = Annotated[str, Field(min_length=1), AfterValidator(_relative_path)]
"""A path inside the execution's temporary working directory (checked again after templates)."""
NonEmpty = Annotated[str, Field(min_length=1)]
ExitCodes = Annotated[list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1)]


def check_relative_path(value: str) -> str:
    """``value`` when it is a relative path without ``..`` (ValueError otherwise); for rendered paths."""
    return _relative_path(value)


class ShellConfig(StepConfigBase):
    """``shell``: an argv list, or a string run by ``/bin/sh -c`` only with ``"shell": true``.

    ``"sandbox": "bubblewrap"`` runs the command in bubblewrap (:mod:`automation_executor.sandbox`),
    without network unless ``"network": true``; the executor refuses such a step, before anything runs,
    when bubblewrap is not usable on its host.
    """

    command: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | Annotated[str, Field(min_length=1)]
    )
    shell: bool = False
    cwd: Annotated[str, Field(min_length=1)] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    expected_exit_codes: ExitCodes = [0]
    sandbox: Literal["none", "bubblewrap"] = "none"
    network: bool = True

    @model_validator(mode="after")
    def _command_matches_shell(self) -> Self:
        if isinstance(self.command, str) and not self.shell:
            raise ValueError('a string command needs "shell": true; give an argv list otherwise')
        if isinstance(self.command, list) and self.shell:
            raise ValueError('"shell": true takes the command as one string')
        return self

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.network and self.sandbox != "bubblewrap":
            yield "network", 'false needs "sandbox": "bubblewrap" (only the sandbox can take the network away)'

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


class HttpConfig(StepConfigBase):
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


class PythonConfig(StepConfigBase):
    """``python``: a declared handler ``package.module:function`` called with a context and ``args``."""

    handler: str
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("handler")
    @classmethod
    def _handler(cls, value: str) -> str:
        if not HANDLER.match(value):
            raise ValueError('handler must be "package.module:function"')
        return value

    def problems(self) -> Iterator[tuple[str, str]]:
        for name, value in self.args.items():
            if not name.isidentifier() or keyword.iskeyword(name):
                yield f"args.{name}", f"{name!r} is not a Python keyword argument name"
            elif name == "ctx":
                yield f"args.{name}", "ctx is the context the executor passes as first argument"
            elif name.endswith("_secret") and not (isinstance(value, str) and SECRET_NAME.match(value)):
                yield f"args.{name}", "an argument ending in _secret must be the NAME of a secret, never its value"

    def secret_fields(self) -> Iterator[str]:
        for name, value in self.args.items():
            if name.endswith("_secret") and isinstance(value, str):
                yield value


def _platform_prefixes() -> frozenset[str]:
    from automation_contracts import PLATFORM_EVENT_PREFIXES  # imported when needed: the child starts light

    return PLATFORM_EVENT_PREFIXES


def is_platform_event_type(event_type: str) -> bool:
    """Whether ``event_type`` is one of the platform's own (``job.*``, ``execution.*``, ``run.*``, ``browser.*``)."""
    return event_type.split(".", 1)[0] in _platform_prefixes()


def check_event_type(value: str) -> str:
    """``value`` when it can be a job's event type (ValueError naming the rule otherwise)."""
    if not EVENT_TYPE.match(value) or len(value) > 255:
        raise ValueError("must be a routing key: dot-separated words of letters, digits, _ and - (no * or #)")
    if is_platform_event_type(value):
        reserved = ", ".join(f"{p}.*" for p in sorted(_platform_prefixes()))
        raise ValueError(f"{value!r} is a platform event type; {reserved} are reserved")
    return value


class EventEmitConfig(StepConfigBase):
    """``event.emit``: publish one event to ``automation.events`` (routing key = ``type``)."""

    SECRETS_ALLOWED: ClassVar[bool] = False

    type: Annotated[str, AfterValidator(check_event_type)]
    source: NonEmpty | None = None
    subject: NonEmpty | None = None
    data: Any = None


URL_PLACEHOLDER = "https://template.invalid"
WORD_PLACEHOLDER = "template"


def stand_in(value: Any, key: str = "") -> Any:
    """``value`` with each template replaced by a placeholder of the right shape, for checking actions."""
    if isinstance(value, str):
        if TEMPLATE_START not in value:
            return value
        if key == "url" and value.startswith(TEMPLATE_START):
            match = TEMPLATE.match(value)
            rest = value[match.end() :] if match is not None else ""
            return URL_PLACEHOLDER + TEMPLATE.sub(WORD_PLACEHOLDER, rest)
        return TEMPLATE.sub(WORD_PLACEHOLDER, value)
    if isinstance(value, Mapping):
        return {k: stand_in(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [stand_in(item, key) for item in value]
    return value


def _check_action(action: Any) -> None:
    """Validate one action against the contract's model (imported when needed: the child starts light)."""
    from automation_contracts import BrowserAction

    TypeAdapter(BrowserAction).validate_python(action)


class Viewport(BaseModel):
    """Page size in CSS pixels (as the ``browser.task`` contract takes it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: Annotated[int, Field(ge=1, le=10000)]
    height: Annotated[int, Field(ge=1, le=10000)]


class BrowserConfig(StepConfigBase):
    """``browser``: actions sent to browser-pool as one ``browser.task``."""

    actions: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=500)]
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] | None = None
    viewport: Viewport | None = None

    @property
    def timeout(self) -> float:
        """The task's timeout in seconds (default 30)."""
        return self.timeout_seconds if self.timeout_seconds is not None else DEFAULT_BROWSER_TIMEOUT_SECONDS

    def problems(self) -> Iterator[tuple[str, str]]:
        for index, action in enumerate(self.actions):
            expression = action.get("expression")
            if action.get("type") == "evaluate" and isinstance(expression, str) and TEMPLATE_START in expression:
                yield (
                    f"actions.{index}.expression",
                    "templates cannot be used in JavaScript code; fill the value into the page, or read it"
                    " with a python step",
                )
                return
            try:
                _check_action(stand_in(action))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                parts = [str(p) for p in first["loc"]]
                if parts and parts[0] == action.get("type"):  # the tagged union's member
                    parts = parts[1:]
                loc = ".".join(parts)
                yield f"actions.{index}" + (f".{loc}" if loc else ""), str(first["msg"]).removeprefix("Value error, ")
                return
