"""``ssh.exec``, ``sftp.upload`` and ``sftp.download`` with asyncssh.

Credentials come from secrets (resolved by the executor before the step runs): ``password_secret`` or
``private_key_secret`` (with ``passphrase_secret`` for an encrypted key), and ``known_hosts_secret``
(OpenSSH ``known_hosts`` lines). Host keys are checked against it; only an explicit
``insecure_skip_host_key_check: true`` turns checking off. Nothing is read from ``~/.ssh``, an agent or
an ssh config file.

``ssh.exec`` runs ``command`` with the remote user's shell; template values are ``shlex``-quoted into it
(POSIX shells), as for ``"shell": true`` steps. Its stdout and stderr stream into the log. Output:
``{exit_code, stdout_tail, stderr_tail}`` (a command killed by signal *n* has exit code 128+*n*).
The SFTP steps output ``{bytes, sha256, path}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Any, cast

import asyncssh

from automation_contracts.steps import (
    SftpDownloadConfig,
    SftpUploadConfig,
    SshConnection,
    SshExecConfig,
)
from automation_executor.child.emitter import Emitter
from automation_executor.child.env import PathOutsideWorkdir, StepEnv
from automation_executor.child.shell import Tail
from automation_executor.domain.lines import LineSplitter
from automation_executor.domain.protocol import LogStream, StepMessage
from automation_executor.domain.steps import ParsedStep
from automation_executor.domain.templates import TemplateContext, render_shell, render_text

READ_CHUNK = 64 * 1024
SFTP_CHUNK = 256 * 1024
TAIL_BYTES_STDERR = 4096


class SshFailure(Exception):
    """Connecting or logging in failed; the message names the target and the reason."""


def _target(config: SshConnection, host: str, username: str) -> str:
    return f"{username}@{host}:{config.port}"


def _key_problem(exc: ValueError, config: SshConnection) -> str:
    """What is wrong with the key material of the secrets, and what to do about it."""
    text = str(exc)
    if config.private_key_secret is not None and "Passphrase must be specified" in text:
        return "the private key is encrypted: give passphrase_secret (the NAME of the secret holding its passphrase)"
    if config.passphrase_secret is not None and ("Unable to decrypt" in text or "Incorrect passphrase" in text):
        return f"the private key cannot be opened with passphrase_secret: {text}"
    return f"unusable key material in a secret: {text}"


@contextlib.asynccontextmanager
async def connect(config: SshConnection, ctx: TemplateContext) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An SSH connection as the config says (secrets read from ``ctx.secrets``)."""
    host = render_text(config.host, ctx)
    username = render_text(config.username, ctx)
    target = _target(config, host, username)
    options: dict[str, Any] = {
        "username": username,
        "port": config.port,
        "config": None,
        "agent_path": None,
        "connect_timeout": config.connect_timeout,
        "login_timeout": config.connect_timeout,
        "known_hosts": None,
        "client_keys": None,
        "password": None,
        "gss_auth": False,
        "host_based_auth": False,
    }
    try:
        if config.known_hosts_secret is not None:
            options["known_hosts"] = asyncssh.import_known_hosts(ctx.secrets[config.known_hosts_secret])
        if config.private_key_secret is not None:
            passphrase = ctx.secrets[config.passphrase_secret] if config.passphrase_secret else None
            options["client_keys"] = [asyncssh.import_private_key(ctx.secrets[config.private_key_secret], passphrase)]
            options["preferred_auth"] = "publickey"
        if config.password_secret is not None:
            options["password"] = ctx.secrets[config.password_secret]
            options["preferred_auth"] = "keyboard-interactive,password"
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise SshFailure(f"ssh {target}: {_key_problem(exc, config)}") from exc
    try:
        connection = await asyncssh.connect(host, **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SshFailure(f"ssh {target}: host key not accepted ({exc.reason}); check known_hosts_secret") from exc
    except asyncssh.PermissionDenied as exc:
        raise SshFailure(f"ssh {target}: login refused ({exc.reason})") from exc
    except asyncssh.Error as exc:
        raise SshFailure(f"ssh {target}: {exc.reason}") from exc
    except TimeoutError as exc:
        raise SshFailure(f"ssh {target}: no connection within {config.connect_timeout:g}s") from exc
    except OSError as exc:
        raise SshFailure(f"ssh {target}: cannot connect: {exc.strerror or exc}") from exc
    try:
        yield connection
    finally:
        connection.close()
        with contextlib.suppress(Exception):
            await asyncio.shield(connection.wait_closed())


async def _relay(reader: asyncssh.SSHReader[bytes], stream: LogStream, step: str, emitter: Emitter, tail: Tail) -> None:
    splitter = LineSplitter(emitter.split_bytes)
    try:
        while chunk := await reader.read(READ_CHUNK):
            tail.add(chunk)
            for line in splitter.feed(chunk):
                emitter.log(stream, step, line)
    finally:
        for line in splitter.flush():
            emitter.log(stream, step, line)


def _exit_code(process: asyncssh.SSHClientProcess[bytes]) -> tuple[int, str]:
    if process.exit_status is not None and process.exit_status >= 0:
        return process.exit_status, f"exit code {process.exit_status}"
    if process.exit_signal is not None:
        name = process.exit_signal[0]
        try:
            number = signal.Signals[f"SIG{name}"].value
        except KeyError:
            return 255, f"killed by signal {name} (exit code 255)"
        return 128 + number, f"killed by SIG{name} (exit code {128 + number})"
    return 255, "the connection closed without an exit status (exit code 255)"


async def run_ssh_exec(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Run the command remotely, streaming its output."""
    config = step.config
    assert isinstance(config, SshExecConfig)
    command = render_shell(config.command, ctx)
    stdout_tail = Tail(env.spec.stdout_tail_bytes, env.emitter.redactor)
    stderr_tail = Tail(TAIL_BYTES_STDERR, env.emitter.redactor)
    try:
        async with connect(config, ctx) as connection:
            env.emitter.log(
                "system", step.name, f"ssh {connection.get_extra_info('username')}@{config.host}: connected"
            )
            process = await connection.create_process(command, encoding=None, stdin=asyncssh.DEVNULL)
            await asyncio.gather(
                _relay(process.stdout, "stdout", step.name, env.emitter, stdout_tail),
                _relay(process.stderr, "stderr", step.name, env.emitter, stderr_tail),
            )
            await process.wait(check=False)
            exit_code, how = _exit_code(process)
    except SshFailure as exc:
        return StepMessage(name=step.name, status="failed", error=str(exc))
    except asyncssh.Error as exc:
        return StepMessage(name=step.name, status="failed", error=f"ssh {config.host}: {exc.reason}")
    output = {"exit_code": exit_code, "stdout_tail": stdout_tail.text(), "stderr_tail": stderr_tail.text()}
    if exit_code in config.expected_exit_codes:
        return StepMessage(name=step.name, status="succeeded", output=output, exit_code=exit_code)
    expected = ", ".join(map(str, config.expected_exit_codes))
    return StepMessage(
        name=step.name, status="failed", output=output, exit_code=exit_code, error=f"{how}; expected {expected}"
    )


def _read_local(env: StepEnv, config: SftpUploadConfig, ctx: TemplateContext) -> bytes:
    if config.content is not None:
        return render_text(config.content, ctx).encode("utf-8")
    assert config.local_path is not None
    path = env.local_path(render_text(config.local_path, ctx))
    return path.read_bytes()


async def run_sftp_upload(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Write a local file (or text) to ``remote_path``."""
    config = step.config
    assert isinstance(config, SftpUploadConfig)
    remote_path = render_text(config.remote_path, ctx)
    try:
        data = _read_local(env, config, ctx)
    except (PathOutsideWorkdir, OSError) as exc:
        return StepMessage(name=step.name, status="failed", error=f"cannot read the local file: {exc}")
    try:
        async with connect(config, ctx) as connection, connection.start_sftp_client() as sftp:
            async with sftp.open(remote_path, "wb", encoding=None) as remote:
                for start in range(0, len(data), SFTP_CHUNK):
                    await remote.write(data[start : start + SFTP_CHUNK])
            if config.mode is not None:
                await sftp.chmod(remote_path, int(config.mode, 8))
    except SshFailure as exc:
        return StepMessage(name=step.name, status="failed", error=str(exc))
    except (asyncssh.SFTPError, asyncssh.Error) as exc:
        return StepMessage(name=step.name, status="failed", error=f"sftp upload to {remote_path}: {exc.reason}")
    digest = hashlib.sha256(data).hexdigest()
    env.emitter.log("system", step.name, f"uploaded {len(data)} bytes to {config.host}:{remote_path}")
    return StepMessage(
        name=step.name, status="succeeded", output={"bytes": len(data), "sha256": digest, "path": remote_path}
    )


async def run_sftp_download(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Copy ``remote_path`` into the working directory as ``local_path``."""
    config = step.config
    assert isinstance(config, SftpDownloadConfig)
    remote_path = render_text(config.remote_path, ctx)
    relative = render_text(config.local_path, ctx)
    try:
        local = env.local_path(relative)
        local.parent.mkdir(parents=True, exist_ok=True)
    except (PathOutsideWorkdir, OSError) as exc:
        return StepMessage(name=step.name, status="failed", error=f"cannot write the local file: {exc}")
    digest = hashlib.sha256()
    size = 0
    try:
        async with (
            connect(config, ctx) as connection,
            connection.start_sftp_client() as sftp,
            sftp.open(remote_path, "rb", encoding=None) as remote,
        ):
            with local.open("wb") as handle:
                while chunk := cast(bytes, await remote.read(SFTP_CHUNK)):  # opened without an encoding
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
    except SshFailure as exc:
        return StepMessage(name=step.name, status="failed", error=str(exc))
    except (asyncssh.SFTPError, asyncssh.Error) as exc:
        return StepMessage(name=step.name, status="failed", error=f"sftp download of {remote_path}: {exc.reason}")
    except OSError as exc:
        return StepMessage(name=step.name, status="failed", error=f"cannot write the local file: {exc}")
    env.emitter.log("system", step.name, f"downloaded {size} bytes from {config.host}:{remote_path}")
    path = str(PurePosixPath(relative))
    return StepMessage(
        name=step.name, status="succeeded", output={"bytes": size, "sha256": digest.hexdigest(), "path": path}
    )
