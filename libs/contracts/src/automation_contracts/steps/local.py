"""Configs of the steps that run on the executor's machine: ``shell``, ``python``, ``http`` and ``event.emit``."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from automation_contracts.jobs import PLATFORM_EVENT_PREFIXES
from automation_contracts.primitives import conforms
from automation_contracts.steps.base import (
    EnvName,
    ExitCodes,
    NonEmpty,
    RelativePath,
    SecretName,
    StepConfig,
    check_url,
)
from automation_contracts.steps.templates import SECRET_NAME, contains_template

HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_HTTP_TIMEOUT_SECONDS = 30.0
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ShellConfig(StepConfig):
    """``shell``: an argv list, or a string run by ``/bin/sh -c`` only with ``"shell": true``.

    ``"sandbox": "bubblewrap"`` runs the command in bubblewrap, without network when ``"network":
    false``; the executor refuses such a step, before anything runs, when bubblewrap is not usable.
    """

    shell: bool = False  # before ``command``: its validator reads it
    command: Annotated[list[NonEmpty], Field(min_length=1)] | NonEmpty
    cwd: RelativePath | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    expected_exit_codes: ExitCodes = [0]
    sandbox: Literal["none", "bubblewrap"] = "none"
    network: bool = True

    @field_validator("command")
    @classmethod
    def _matches_shell(cls, value: list[str] | str, info: ValidationInfo) -> list[str] | str:
        shell = info.data.get("shell", False)
        if isinstance(value, str) and not shell:
            raise ValueError('a string command needs "shell": true; give an argv list instead')
        if isinstance(value, list) and shell:
            raise ValueError('"shell": true takes the command as one string')
        return value

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.network and self.sandbox != "bubblewrap":
            yield "network", 'false needs "sandbox": "bubblewrap" (only the sandbox can take the network away)'

    def shell_scripts(self) -> tuple[str, ...]:
        return ("command",) if self.shell else ()


def _handler(value: str) -> str:
    if not HANDLER.match(value):
        raise ValueError('handler must be "package.module:function"')
    return value


class PythonConfig(StepConfig):
    """``python``: a handler declared in an installed module's manifest, called with a context and ``args``."""

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

    def secret_fields(self) -> Iterator[str]:
        for name, value in self.args.items():
            if name.endswith("_secret") and isinstance(value, str):
                yield value


class HttpConfig(StepConfig):
    """``http``: one request; the response's status, headers and body become the step output."""

    method: HttpMethod = "GET"
    url: NonEmpty
    headers: dict[NonEmpty, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    expected_status: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] | None = None
    max_body_bytes: Annotated[int, Field(ge=1, le=MAX_BODY_BYTES)] | None = None
    follow_redirects: bool = False
    server_cert_validation: Literal["validate", "ignore"] = "validate"
    ca_secret: SecretName | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value, frozenset({"http", "https"}))

    def problems(self) -> Iterator[tuple[str, str]]:
        if "json_body" in self.model_fields_set and self.body is not None:
            yield "body", 'give "json" or "body", not both'
        if self.ca_secret is not None and self.server_cert_validation == "ignore":
            yield "ca_secret", 'contradicts server_cert_validation: "ignore"; give one or the other'

    @property
    def timeout(self) -> float:
        """The request timeout in seconds (default 30)."""
        return self.timeout_seconds if self.timeout_seconds is not None else DEFAULT_HTTP_TIMEOUT_SECONDS

    def status_expected(self, status: int) -> bool:
        """Whether ``status`` counts as success (default: any 2xx)."""
        if self.expected_status is None:
            return 200 <= status < 300
        return status in self.expected_status


def is_platform_event_type(event_type: str) -> bool:
    """Whether ``event_type`` is one of the platform's own (``job.*``, ``execution.*``, ``run.*``, ``browser.*``)."""
    return event_type.split(".", 1)[0] in PLATFORM_EVENT_PREFIXES


def check_event_type(value: str) -> str:
    """``value`` when a job may publish events of that type (ValueError naming the rule otherwise)."""
    if not EVENT_TYPE.match(value) or len(value) > 255:
        raise ValueError("must be a routing key: dot-separated words of letters, digits, _ and - (no * or #)")
    if is_platform_event_type(value):
        reserved = ", ".join(f"{p}.*" for p in sorted(PLATFORM_EVENT_PREFIXES))
        raise ValueError(f"{value!r} is a platform event type; {reserved} are reserved")
    return value


def _source(value: str) -> str:
    if not contains_template(value) and not conforms(value, "uri-reference"):
        raise ValueError("must be a URI-reference, e.g. /inventory/sync")
    return value


class EventEmitConfig(StepConfig):
    """``event.emit``: publish one event to ``automation.events`` (routing key = ``type``)."""

    SECRETS_ALLOWED: ClassVar[bool] = False

    type: Annotated[str, AfterValidator(check_event_type)]
    source: Annotated[str, Field(min_length=1), AfterValidator(_source)] | None = None
    subject: NonEmpty | None = None
    data: Any = None
