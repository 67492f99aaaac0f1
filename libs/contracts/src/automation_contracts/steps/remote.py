"""Configs of the steps that reach other machines: ``ssh.exec``, ``sftp.upload``, ``sftp.download``,
``winrm.exec`` and ``winrm.copy``.

Credentials are secret NAMES (``password_secret``, ``private_key_secret``, ``passphrase_secret``,
``known_hosts_secret``, ``ca_secret``) that the executor resolves from its secrets directory or
environment when the step runs. SSH host-key checking is on unless ``insecure_skip_host_key_check:
true`` is written out; WinRM speaks HTTPS only and validates the server certificate unless
``server_cert_validation: "ignore"`` is written out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from automation_contracts.steps.base import (
    ExitCodes,
    Host,
    NonEmpty,
    RelativePath,
    SecretName,
    StepConfig,
    check_url,
    exactly_one,
)

FILE_MODE = re.compile(r"^0?[0-7]{3}$")
DEFAULT_CONNECT_TIMEOUT_SECONDS = 30.0
WinrmTransport = Literal["ntlm", "kerberos", "basic", "credssp"]


def _file_mode(value: str) -> str:
    if not FILE_MODE.match(value):
        raise ValueError('mode is an octal permission string such as "0644" or "750"')
    return value


class SshConnection(StepConfig):
    """Where and as whom to connect over SSH (asyncssh).

    Log in with ``password_secret`` or ``private_key_secret``; an encrypted private key is opened with
    ``passphrase_secret``.
    """

    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: NonEmpty
    password_secret: SecretName | None = None
    private_key_secret: SecretName | None = None
    passphrase_secret: SecretName | None = None
    known_hosts_secret: SecretName | None = None
    insecure_skip_host_key_check: bool = False
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] | None = None

    @property
    def connect_timeout(self) -> float:
        """Seconds to connect and log in (default 30)."""
        if self.connect_timeout_seconds is None:
            return DEFAULT_CONNECT_TIMEOUT_SECONDS
        return self.connect_timeout_seconds

    def problems(self) -> Iterator[tuple[str, str]]:
        yield from exactly_one(self, "password_secret", "private_key_secret", "the NAME of the secret to log in with")
        if self.passphrase_secret is not None and self.private_key_secret is None:
            yield "passphrase_secret", "a passphrase opens an encrypted private key: it goes with private_key_secret"
        if self.known_hosts_secret is None and not self.insecure_skip_host_key_check:
            yield (
                "known_hosts_secret",
                "host keys are checked: give known_hosts_secret (the NAME of a secret holding known_hosts lines),"
                " or set insecure_skip_host_key_check: true explicitly",
            )
        if self.known_hosts_secret is not None and self.insecure_skip_host_key_check:
            yield "insecure_skip_host_key_check", "contradicts known_hosts_secret; give one or the other"


class SshExecConfig(SshConnection):
    """``ssh.exec``: run ``command`` with the remote user's shell (template values become shell variables)."""

    command: NonEmpty
    expected_exit_codes: ExitCodes = [0]

    def shell_scripts(self) -> tuple[str, ...]:
        return ("command",)


class SftpUploadConfig(SshConnection):
    """``sftp.upload``: a file of the working directory (``local_path``) or text (``content``) to ``remote_path``."""

    local_path: RelativePath | None = None
    content: str | None = None
    remote_path: NonEmpty
    mode: Annotated[str, AfterValidator(_file_mode)] | None = None

    def problems(self) -> Iterator[tuple[str, str]]:
        yield from super().problems()
        yield from exactly_one(self, "local_path", "content", "what to upload")


class SftpDownloadConfig(SshConnection):
    """``sftp.download``: ``remote_path`` into the execution's directory as ``local_path``."""

    remote_path: NonEmpty
    local_path: RelativePath


class WinrmConnection(StepConfig):
    """Where and as whom to connect over WS-Management (pywinrm), always over HTTPS."""

    endpoint: NonEmpty
    transport: WinrmTransport = "ntlm"
    username: NonEmpty
    password_secret: SecretName | None = None
    server_cert_validation: Literal["validate", "ignore"] = "validate"
    ca_secret: SecretName | None = None

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        return check_url(value, frozenset({"https"}), "endpoint")

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.password_secret is None and self.transport != "kerberos":
            yield "password_secret", f"{self.transport} needs password_secret (the NAME of a secret)"
        if self.ca_secret is not None and self.server_cert_validation == "ignore":
            yield "ca_secret", 'contradicts server_cert_validation: "ignore"; give one or the other'


class WinrmExecConfig(WinrmConnection):
    """``winrm.exec``: run a PowerShell ``script`` (template values become variables, never code)."""

    script: NonEmpty
    expected_exit_codes: ExitCodes = [0]


class WinrmCopyConfig(WinrmConnection):
    """``winrm.copy``: a file of the execution's directory (``local_path``) or text (``content``) to ``remote_path``."""

    local_path: RelativePath | None = None
    content: str | None = None
    remote_path: NonEmpty

    def problems(self) -> Iterator[tuple[str, str]]:
        yield from super().problems()
        yield from exactly_one(self, "local_path", "content", "what to copy")
