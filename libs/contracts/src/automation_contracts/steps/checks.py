"""Checking one step: its config for its type (:func:`parse_config`) and its templates (:func:`check_templates`).

Both raise :class:`~automation_contracts.errors.ContractError` whose ``path`` names the field at fault
below the step's prefix (``steps.2.config.known_hosts_secret``, ``check.type``); job-api turns it into
a problem+json, the executor into a permanent failure of the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from pydantic import ValidationError

from automation_contracts.errors import ContractError, from_validation_error
from automation_contracts.steps.base import StepConfig
from automation_contracts.steps.browser import BrowserConfig
from automation_contracts.steps.local import EventEmitConfig, HttpConfig, PythonConfig, ShellConfig
from automation_contracts.steps.remote import (
    SftpDownloadConfig,
    SftpUploadConfig,
    SshExecConfig,
    WinrmCopyConfig,
    WinrmExecConfig,
)
from automation_contracts.steps.shell_script import check_shell_script
from automation_contracts.steps.templates import (
    TEMPLATE_START,
    TemplateError,
    TemplateScope,
    check_reference,
    iter_strings,
    parse_templates,
)

StepType = Literal[
    "shell",
    "python",
    "http",
    "event.emit",
    "browser",
    "ssh.exec",
    "sftp.upload",
    "sftp.download",
    "winrm.exec",
    "winrm.copy",
]
STEP_CONFIGS: Mapping[str, type[StepConfig]] = {
    "shell": ShellConfig,
    "python": PythonConfig,
    "http": HttpConfig,
    "event.emit": EventEmitConfig,
    "browser": BrowserConfig,
    "ssh.exec": SshExecConfig,
    "sftp.upload": SftpUploadConfig,
    "sftp.download": SftpDownloadConfig,
    "winrm.exec": WinrmExecConfig,
    "winrm.copy": WinrmCopyConfig,
}
"""Every step type, and the model of its ``config``."""


def _field_names(model: type[StepConfig]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def parse_config(prefix: str, step_type: str, config: Any) -> StepConfig:
    """The typed config of one step (``prefix``: ``steps.<i>`` or ``check``).

    Raises :class:`ContractError` naming ``<prefix>.type`` or ``<prefix>.config[.<path>]``.
    """
    model = STEP_CONFIGS.get(step_type)
    if model is None:
        known = ", ".join(sorted(STEP_CONFIGS))
        raise ContractError(f"unknown step type {step_type!r} (known: {known})", f"{prefix}.type")
    where = f"{prefix}.config"
    if not isinstance(config, Mapping):
        raise ContractError("must be an object", where)
    fields = _field_names(model)
    for key in config:
        if key not in fields and f"{key}_secret" in fields:
            raise ContractError(
                f"secrets are referenced by name: give {key}_secret, the NAME of a secret, never its value",
                f"{where}.{key}",
            )
    raw = dict(config)
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        error = from_validation_error(exc, raw, where)
        raise ContractError(error.reason.removeprefix("Value error, "), error.path) from exc
    for path, message in parsed.problems():
        raise ContractError(message, f"{where}.{path}")
    return parsed


def check_templates(prefix: str, config: Mapping[str, Any], parsed: StepConfig, scope: TemplateScope) -> frozenset[str]:
    """Check every template of a step's ``config`` (as given) in ``scope``; the secret names they use.

    Templates in the fields :meth:`StepConfig.shell_scripts` names must also stand where a quoted word
    is safe (:func:`~automation_contracts.steps.shell_script.check_shell_script`); a secret is refused
    where the config is published (:attr:`StepConfig.SECRETS_ALLOWED`). Raises :class:`ContractError`
    naming ``<prefix>.config.<path>`` (the string the template is in).
    """
    if not parsed.SECRETS_ALLOWED:
        scope = replace(scope, secrets_allowed=False)
    where = f"{prefix}.config"
    scripts = {f"{where}.{field}" for field in parsed.shell_scripts()}
    secrets: set[str] = set()
    for path, text in iter_strings(dict(config), where):
        if TEMPLATE_START not in text:
            continue
        try:
            for ref in parse_templates(text):
                check_reference(ref, scope)
                if ref.root == "secrets":
                    secrets.add(ref.parts[1])
            if path in scripts:
                check_shell_script(text)
        except TemplateError as exc:
            raise ContractError(str(exc), path) from exc
    return frozenset(secrets)
