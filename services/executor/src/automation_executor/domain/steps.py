"""Step kinds and their configuration, checked before anything runs.

A job's steps arrive as ``{"name", "type", "config", "timeout_seconds"}``; :func:`parse_steps` turns
them into :class:`ParsedStep` objects with a typed config, or raises :class:`StepConfigError` naming the
field at fault (``steps.1.config.command``). It also checks every template in every string of a config:
its syntax, its namespace, that ``steps.<name>`` refers to an earlier step, that ``check.payload`` is
only used when the job has a check step (and not in the check itself), and that ``secrets.*`` is not
used where the config is published (``event.emit``). :func:`parse_check` does the same for the job's
optional check step, which runs first and reads no step.

Kinds: ``shell``, ``http``, ``python``, ``event.emit``, ``browser`` (models in
:mod:`~automation_executor.domain.configs`), ``ssh.exec``, ``sftp.upload``, ``sftp.download``,
``winrm.exec``, ``winrm.copy`` (:mod:`~automation_executor.domain.remote_configs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from automation_executor.domain.configs import (
    BrowserConfig,
    EventEmitConfig,
    HttpConfig,
    PythonConfig,
    ShellConfig,
    StepConfigBase,
)
from automation_executor.domain.remote_configs import (
    SftpDownloadConfig,
    SftpUploadConfig,
    SshExecConfig,
    WinrmCopyConfig,
    WinrmExecConfig,
)
from automation_executor.domain.templates import TemplateError, check_shell_script, references

__all__ = [
    "CONFIG_MODELS",
    "BrowserConfig",
    "EventEmitConfig",
    "HttpConfig",
    "ParsedStep",
    "PythonConfig",
    "SftpDownloadConfig",
    "SftpUploadConfig",
    "ShellConfig",
    "SshExecConfig",
    "StepConfigError",
    "StepKind",
    "WinrmCopyConfig",
    "WinrmExecConfig",
    "parse_check",
    "parse_job",
    "parse_step",
    "parse_steps",
]

StepKind = Literal[
    "shell",
    "http",
    "python",
    "event.emit",
    "browser",
    "ssh.exec",
    "sftp.upload",
    "sftp.download",
    "winrm.exec",
    "winrm.copy",
]
CONFIG_MODELS: Mapping[str, type[StepConfigBase]] = {
    "shell": ShellConfig,
    "http": HttpConfig,
    "python": PythonConfig,
    "event.emit": EventEmitConfig,
    "browser": BrowserConfig,
    "ssh.exec": SshExecConfig,
    "sftp.upload": SftpUploadConfig,
    "sftp.download": SftpDownloadConfig,
    "winrm.exec": WinrmExecConfig,
    "winrm.copy": WinrmCopyConfig,
}
CHECK_PREFIX = "check"


class StepConfigError(ValueError):
    """A step cannot run as configured; ``field`` is the dotted path of the fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class ParsedStep:
    """A step whose config was checked; ``secrets`` are the secret names it needs before it runs."""

    index: int
    name: str
    kind: StepKind
    config: StepConfigBase
    timeout_seconds: int | None = None
    secrets: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Scope:
    earlier: frozenset[str]
    has_check: bool
    in_check: bool


def parse_step(
    index: int,
    step: Mapping[str, Any],
    earlier: Iterable[str] = (),
    *,
    has_check: bool = False,
    prefix: str | None = None,
) -> ParsedStep:
    """Check one step (``earlier``: names of the steps before it; ``has_check``: the job has a check step)."""
    in_check = prefix == CHECK_PREFIX
    prefix = prefix or f"steps.{index}"
    name = str(step.get("name") or (CHECK_PREFIX if in_check else ""))
    kind = str(step.get("type"))
    model = CONFIG_MODELS.get(kind)
    if model is None:
        supported = ", ".join(CONFIG_MODELS)
        raise StepConfigError(
            f"step type {step.get('type')!r} is not supported by this executor (supported: {supported})", prefix
        )
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
    for path, message in config.problems():
        raise StepConfigError(message, f"{prefix}.config.{path}")
    scope = _Scope(earlier=frozenset(earlier), has_check=has_check, in_check=in_check)
    secrets = _check_templates(prefix, dict(raw), config, scope) | set(config.secret_fields())
    timeout = step.get("timeout_seconds")
    return ParsedStep(
        index=index,
        name=name,
        kind=kind,  # type: ignore[arg-type]  # a key of CONFIG_MODELS
        config=config,
        timeout_seconds=timeout if isinstance(timeout, int) else None,
        secrets=frozenset(secrets),
    )


def parse_steps(steps: Sequence[Mapping[str, Any]], *, has_check: bool = False) -> list[ParsedStep]:
    """Check every step of a job, in order."""
    parsed: list[ParsedStep] = []
    for index, step in enumerate(steps):
        parsed.append(parse_step(index, step, [p.name for p in parsed], has_check=has_check))
    return parsed


def parse_check(step: Mapping[str, Any]) -> ParsedStep:
    """Check a job's check step (field paths start with ``check``; it reads no step and no check payload)."""
    return parse_step(0, step, (), has_check=True, prefix=CHECK_PREFIX)


def parse_job(
    steps: Sequence[Mapping[str, Any]], check: Mapping[str, Any] | None
) -> tuple[ParsedStep | None, list[ParsedStep]]:
    """The check step (or None) and the steps of a job, all checked."""
    parsed_check = parse_check(check) if check is not None else None
    return parsed_check, parse_steps(steps, has_check=check is not None)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(dotted path, text)`` of every string inside a JSON value (object keys are not values)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")


def _check_templates(prefix: str, raw: dict[str, Any], config: StepConfigBase, scope: _Scope) -> set[str]:
    """Check every template of the config; the secret names they use."""
    secrets: set[str] = set()
    for path, text in _strings(raw, f"{prefix}.config"):
        try:
            parts_list = references(text)
            if path == f"{prefix}.config.command" and isinstance(config, ShellConfig) and config.shell:
                check_shell_script(text)
            if path == f"{prefix}.config.command" and isinstance(config, SshExecConfig):
                check_shell_script(text)
        except TemplateError as exc:
            raise StepConfigError(str(exc), path) from exc
        for parts in parts_list:
            problem = _reference_problem(parts, config, scope)
            if problem is not None:
                raise StepConfigError(problem, path)
            if parts[0] == "secrets":
                secrets.add(parts[1])
    return secrets


def _reference_problem(parts: list[str], config: StepConfigBase, scope: _Scope) -> str | None:
    root = parts[0]
    written = "${{ " + ".".join(parts) + " }}"
    if root == "steps":
        if scope.in_check:
            return f"{written}: the check step runs before every step and cannot read their output"
        if parts[1] not in scope.earlier:
            return f"step {parts[1]!r} is not an earlier step of this job"
    elif root == "check":
        if scope.in_check:
            return f"{written}: the check step cannot read its own payload"
        if not scope.has_check:
            return f"{written}: this job has no check step"
    elif root == "secrets" and not config.SECRETS_ALLOWED:
        return f"{written}: secrets cannot be used here, this config is published as an event"
    return None
