"""Step configs and the ``${{ ... }}`` template grammar: the one definition job-api and the executor share.

job-api checks a definition with :func:`parse_config` and :func:`check_templates` before storing it;
the executor runs the same checks on the job it is asked to run (defence in depth), then renders the
templates and runs the steps. The models describe the spec of every step type (issue 4):

- local: ``shell``, ``python``, ``http``, ``event.emit`` (:mod:`~automation_contracts.steps.local`);
- remote: ``ssh.exec``, ``sftp.upload``, ``sftp.download``, ``winrm.exec``, ``winrm.copy``
  (:mod:`~automation_contracts.steps.remote`);
- ``browser`` (:mod:`~automation_contracts.steps.browser`).

Every failure is a :class:`~automation_contracts.errors.ContractError` naming the field at fault.
"""

from automation_contracts.steps.base import (
    ENV_NAME,
    ExitCodes,
    Host,
    NonEmpty,
    RelativePath,
    SecretName,
    StepConfig,
    check_relative_path,
    check_url,
    exactly_one,
)
from automation_contracts.steps.browser import DEFAULT_BROWSER_TIMEOUT_SECONDS, BrowserConfig, code_template, stand_in
from automation_contracts.steps.checks import STEP_CONFIGS, StepType, check_templates, parse_config
from automation_contracts.steps.local import (
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    EventEmitConfig,
    HttpConfig,
    HttpMethod,
    PythonConfig,
    ShellConfig,
    check_event_type,
    is_platform_event_type,
)
from automation_contracts.steps.remote import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    SftpDownloadConfig,
    SftpUploadConfig,
    SshConnection,
    SshExecConfig,
    WinrmConnection,
    WinrmCopyConfig,
    WinrmExecConfig,
    WinrmTransport,
)
from automation_contracts.steps.shell_script import check_shell_script
from automation_contracts.steps.templates import (
    ROOTS,
    SECRET_NAME,
    TEMPLATE,
    TEMPLATE_START,
    Reference,
    TemplateError,
    TemplateScope,
    check_reference,
    contains_template,
    iter_strings,
    parse_expression,
    parse_templates,
)

__all__ = [
    "DEFAULT_BROWSER_TIMEOUT_SECONDS",
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_HTTP_TIMEOUT_SECONDS",
    "ENV_NAME",
    "ROOTS",
    "SECRET_NAME",
    "STEP_CONFIGS",
    "TEMPLATE",
    "TEMPLATE_START",
    "BrowserConfig",
    "EventEmitConfig",
    "ExitCodes",
    "Host",
    "HttpConfig",
    "HttpMethod",
    "NonEmpty",
    "PythonConfig",
    "Reference",
    "RelativePath",
    "SecretName",
    "SftpDownloadConfig",
    "SftpUploadConfig",
    "ShellConfig",
    "SshConnection",
    "SshExecConfig",
    "StepConfig",
    "StepType",
    "TemplateError",
    "TemplateScope",
    "WinrmConnection",
    "WinrmCopyConfig",
    "WinrmExecConfig",
    "WinrmTransport",
    "check_event_type",
    "check_reference",
    "check_relative_path",
    "check_shell_script",
    "check_templates",
    "check_url",
    "code_template",
    "contains_template",
    "exactly_one",
    "is_platform_event_type",
    "iter_strings",
    "parse_config",
    "parse_expression",
    "parse_templates",
    "stand_in",
]
