"""The step config models, as the executor's step runners import them.

They are :mod:`automation_contracts.steps`, the one definition job-api checks definitions with, so a
definition job-api accepts is one the executor runs, and the executor checks the same rules again
before a run (defence in depth): ``shell``, ``http``, ``python``, ``event.emit``, ``browser``,
``ssh.exec``, ``sftp.upload``, ``sftp.download``, ``winrm.exec`` and ``winrm.copy``.
"""

from __future__ import annotations

from automation_contracts.steps import (
    DEFAULT_BROWSER_TIMEOUT_SECONDS,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    BrowserConfig,
    EventEmitConfig,
    HttpConfig,
    PythonConfig,
    SftpDownloadConfig,
    SftpUploadConfig,
    ShellConfig,
    SshConnection,
    SshExecConfig,
    StepConfig,
    WinrmConnection,
    WinrmCopyConfig,
    WinrmExecConfig,
    check_event_type,
    check_relative_path,
    is_platform_event_type,
)

__all__ = [
    "DEFAULT_BROWSER_TIMEOUT_SECONDS",
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_HTTP_TIMEOUT_SECONDS",
    "BrowserConfig",
    "EventEmitConfig",
    "HttpConfig",
    "PythonConfig",
    "SftpDownloadConfig",
    "SftpUploadConfig",
    "ShellConfig",
    "SshConnection",
    "SshExecConfig",
    "StepConfig",
    "WinrmConnection",
    "WinrmCopyConfig",
    "WinrmExecConfig",
    "check_event_type",
    "check_relative_path",
    "is_platform_event_type",
]
