"""Step kinds and their configuration, checked before anything runs.

A job's steps arrive as ``{"name", "type", "config", "timeout_seconds"}``; :func:`parse_steps` turns
them into :class:`ParsedStep` objects with a typed config, or raises :class:`StepConfigError` naming the
field at fault (``steps.1.config.command``). The checks are job-api's own
(:mod:`automation_contracts.steps`), run again here as defence in depth: each config for its type, and
every template in every string of a config — its syntax, its root, that ``steps.<name>`` refers to an
earlier step, that ``check.payload`` is only used when the job has a check step (and not in the check
itself), that ``secrets.*`` is not used where the config is published (``event.emit``), that templates
in a ``"shell": true`` or ``ssh.exec`` command stand as words, and that no template is pasted into a
browser ``evaluate`` expression (JavaScript). :func:`parse_check` does the same for the job's optional
check step, which runs first and reads no step.

Kinds: ``shell``, ``http``, ``python``, ``event.emit``, ``browser``, ``ssh.exec``, ``sftp.upload``,
``sftp.download``, ``winrm.exec``, ``winrm.copy`` (models in :mod:`automation_contracts.steps`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from automation_contracts.errors import ContractError
from automation_contracts.steps import (
    STEP_CONFIGS,
    BrowserConfig,
    EventEmitConfig,
    HttpConfig,
    PythonConfig,
    SftpDownloadConfig,
    SftpUploadConfig,
    ShellConfig,
    SshExecConfig,
    StepConfig,
    StepType,
    TemplateScope,
    WinrmCopyConfig,
    WinrmExecConfig,
    check_templates,
    parse_config,
)

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

StepKind = StepType
CONFIG_MODELS: Mapping[str, type[StepConfig]] = STEP_CONFIGS
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
    config: StepConfig
    timeout_seconds: int | None = None
    secrets: frozenset[str] = frozenset()


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
    raw = step.get("config")
    scope = TemplateScope(earlier_steps=frozenset(earlier), step_name=name, has_check=has_check, in_check=in_check)
    try:
        config = parse_config(prefix, str(step.get("type")), raw)
        secrets = check_templates(prefix, cast(Mapping[str, Any], raw), config, scope)
    except ContractError as exc:
        raise StepConfigError(exc.reason, exc.path) from exc
    timeout = step.get("timeout_seconds")
    return ParsedStep(
        index=index,
        name=name,
        kind=cast(StepKind, step.get("type")),  # parse_config knows the type
        config=config,
        timeout_seconds=timeout if isinstance(timeout, int) else None,
        secrets=secrets | frozenset(config.secret_fields()),
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
