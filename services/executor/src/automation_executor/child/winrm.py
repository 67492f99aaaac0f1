"""``winrm.exec`` (PowerShell) and ``winrm.copy`` with pywinrm, over HTTPS only.

Transports: ``ntlm`` (default), ``basic``, ``credssp`` and ``kerberos`` (the last needs pywinrm's
``kerberos`` extra and the system's GSSAPI libraries in the executor image; without them the step fails
saying so). The server certificate is validated against the system CAs, or against ``ca_secret`` (a PEM
bundle); only ``server_cert_validation: "ignore"`` turns validation off. Proxies and CA settings from the
environment are never used.

``winrm.exec`` opens a shell (UTF-8 code page), runs ``powershell.exe -NoProfile -NonInteractive
-EncodedCommand <script>``, streams stdout into the log as it is received, and closes the shell.
Template values never become PowerShell code (see
:func:`~automation_executor.domain.templates.render_powershell`). stderr is read whole and, when it is
PowerShell's CLIXML, turned into its text. Output: ``{exit_code, stdout_tail, stderr_tail}``.

``winrm.copy`` writes the file in chunks, each one a PowerShell command (the data travels as base64,
the remote path too), in one shell, then compares the remote file's SHA-256 with the local one.
Output: ``{bytes, sha256, path}``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from winrm.exceptions import WinRMError, WinRMOperationTimeoutError, WinRMTransportError
from winrm.protocol import Protocol

from automation_contracts.steps import WinrmConnection, WinrmCopyConfig, WinrmExecConfig
from automation_executor.child.env import PathOutsideWorkdir, StepEnv
from automation_executor.child.shell import Tail
from automation_executor.child.threads import run_blocking
from automation_executor.domain.lines import LineSplitter
from automation_executor.domain.protocol import StepMessage
from automation_executor.domain.steps import ParsedStep
from automation_executor.domain.templates import TemplateContext, render_powershell, render_text, render_url

POWERSHELL = "powershell.exe"
POWERSHELL_ARGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand")
UTF8_CODEPAGE = 65001
OPERATION_TIMEOUT_SECONDS = 20
READ_TIMEOUT_SECONDS = 30
COPY_CHUNK_BYTES = 6 * 1024
"""Raw bytes per copy command: its encoded script stays well under Windows' 32 767-character command line."""
TAIL_BYTES_STDERR = 4096
CLIXML_HEADER = b"#< CLIXML"


class WinrmFailure(Exception):
    """The WinRM exchange failed; the message names the endpoint and the reason."""


def _is_https(endpoint: str) -> bool:
    """WinRM only over HTTPS, also when the endpoint came from a template."""
    parts = urlsplit(endpoint)
    return parts.scheme == "https" and bool(parts.hostname)


def encode_script(script: str) -> str:
    """A PowerShell script as ``-EncodedCommand`` takes it: base64 of UTF-16LE."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def _b64_text(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def clean_clixml(stderr: bytes) -> str:
    """PowerShell's CLIXML error stream as text (other text as it is)."""
    if not stderr.startswith(CLIXML_HEADER):
        return stderr.decode("utf-8", errors="replace")
    body = stderr[len(CLIXML_HEADER) :].lstrip(b"\r\n")
    try:
        root = ET.fromstring(re.sub(rb'xmlns="[^"]*"', b"", body))  # noqa: S314 - the server's own output, no DTDs
    except ET.ParseError:
        return stderr.decode("utf-8", errors="replace")
    parts = [node.text or "" for node in root.iter("S") if node.get("S") == "Error"]
    text = "".join(parts).replace("_x000D__x000A_", "\n")
    return text.strip() or stderr.decode("utf-8", errors="replace")


def _path_assignment(remote_path: str) -> str:
    decode = "[System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String"
    return f"$path = {decode}('{_b64_text(remote_path)}'))\n"


def copy_chunk_script(remote_path: str, chunk: bytes, *, first: bool) -> str:
    """The PowerShell that writes (first) or appends one chunk to ``remote_path``."""
    mode = "Create" if first else "Append"
    return (
        "$ErrorActionPreference = 'Stop'\n"
        + _path_assignment(remote_path)
        + f"$bytes = [System.Convert]::FromBase64String('{base64.b64encode(chunk).decode('ascii')}')\n"
        + f"$stream = [System.IO.File]::Open($path, [System.IO.FileMode]::{mode}, [System.IO.FileAccess]::Write)\n"
        + "try { $stream.Write($bytes, 0, $bytes.Length) } finally { $stream.Dispose() }\n"
    )


def copy_hash_script(remote_path: str) -> str:
    """The PowerShell that prints the SHA-256 of ``remote_path``."""
    return (
        "$ErrorActionPreference = 'Stop'\n"
        + _path_assignment(remote_path)
        + "(Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash\n"
    )


@contextlib.contextmanager
def _ca_file(env: StepEnv, pem: str | None) -> Iterator[str | None]:
    """The CA bundle as a file for requests (removed afterwards), or None for the system CAs."""
    if pem is None:
        yield None
        return
    handle = tempfile.NamedTemporaryFile("w", dir=env.workdir, prefix=".winrm-ca-", suffix=".pem", delete=False)  # noqa: SIM115
    try:
        with handle:
            handle.write(pem)
        yield handle.name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)


def _protocol(config: WinrmConnection, ctx: TemplateContext, endpoint: str, ca_path: str | None) -> Protocol:
    if config.transport == "kerberos":
        from winrm import transport

        if not transport.HAVE_KERBEROS:
            raise WinrmFailure(
                "winrm kerberos transport is not available in this executor: install pywinrm[kerberos]"
                " (requests-kerberos and the system GSSAPI libraries) in its image"
            )
    password = ctx.secrets[config.password_secret] if config.password_secret is not None else None
    return Protocol(
        endpoint,
        transport=config.transport,
        username=render_text(config.username, ctx),
        password=password,
        server_cert_validation=config.server_cert_validation,
        ca_trust_path=ca_path,  # type: ignore[arg-type]  # None: the system CAs, not the environment's
        read_timeout_sec=READ_TIMEOUT_SECONDS,
        operation_timeout_sec=OPERATION_TIMEOUT_SECONDS,
        proxy=None,
    )


class _Shell:
    """One WinRM shell on the remote host, for commands run one after another (blocking; in a thread)."""

    def __init__(self, protocol: Protocol, stop: threading.Event) -> None:
        self._protocol = protocol
        self._stop = stop
        self._id: str | None = None

    def __enter__(self) -> _Shell:
        self._id = self._protocol.open_shell(codepage=UTF8_CODEPAGE, noprofile=True)
        return self

    def __exit__(self, *_: object) -> None:
        if self._id is not None:
            with contextlib.suppress(WinRMError, WinRMTransportError, OSError, AssertionError):
                self._protocol.close_shell(self._id)

    def powershell(self, script: str, on_stdout: Callable[[bytes], None]) -> tuple[int, bytes]:
        """Run ``script``; stdout chunks go to ``on_stdout`` as they come; (exit code, stderr)."""
        assert self._id is not None
        command = self._protocol.run_command(self._id, POWERSHELL, [*POWERSHELL_ARGS, encode_script(script)])
        stderr = bytearray()
        try:
            while not self._stop.is_set():
                try:
                    out, err, code, done = self._protocol.get_command_output_raw(self._id, command)
                except WinRMOperationTimeoutError:
                    continue  # nothing new within the operation timeout: ask again
                if out:
                    on_stdout(out)
                stderr += err
                if done:
                    return code, bytes(stderr)
            raise WinrmFailure("stopped")
        finally:
            with contextlib.suppress(WinRMError, WinRMTransportError, OSError, AssertionError):
                self._protocol.cleanup_command(self._id, command)


def _describe(error: Exception, endpoint: str) -> str:
    if isinstance(error, WinrmFailure):
        return str(error)
    if isinstance(error, WinRMTransportError):
        return f"winrm {endpoint}: HTTP {error.code}: {error.message}"
    return f"winrm {endpoint}: {type(error).__name__}: {error}"


async def run_winrm_exec(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Run the PowerShell script on the remote host."""
    config = step.config
    assert isinstance(config, WinrmExecConfig)
    endpoint = render_url(config.endpoint, ctx)
    if not _is_https(endpoint):
        return StepMessage(name=step.name, status="failed", error=f"endpoint must be https://, got {endpoint!r}")
    script = render_powershell(config.script, ctx)
    ca_pem = ctx.secrets[config.ca_secret] if config.ca_secret is not None else None
    emitter = env.emitter
    stdout_tail = Tail(env.spec.stdout_tail_bytes, emitter.redactor)
    splitter = LineSplitter(emitter.split_bytes)
    stop = threading.Event()

    def on_stdout(chunk: bytes) -> None:
        stdout_tail.add(chunk)
        for line in splitter.feed(chunk):
            emitter.log("stdout", step.name, line)

    with _ca_file(env, ca_pem) as ca_path:

        def run() -> tuple[int, bytes]:
            protocol = _protocol(config, ctx, endpoint, ca_path)
            with _Shell(protocol, stop) as shell:
                return shell.powershell(script, on_stdout)

        try:
            exit_code, stderr = await run_blocking(run, name=f"winrm-{step.name}")
        except (WinrmFailure, WinRMError, WinRMTransportError, OSError, ValueError) as exc:
            return StepMessage(name=step.name, status="failed", error=_describe(exc, endpoint))
        except BaseException:
            stop.set()
            raise
    for line in splitter.flush():
        emitter.log("stdout", step.name, line)
    stderr_text = clean_clixml(stderr)
    for line in stderr_text.splitlines():
        emitter.log("stderr", step.name, line)
    stderr_tail = Tail(TAIL_BYTES_STDERR, emitter.redactor)
    stderr_tail.add(stderr_text.encode("utf-8"))
    output = {"exit_code": exit_code, "stdout_tail": stdout_tail.text(), "stderr_tail": stderr_tail.text()}
    if exit_code in config.expected_exit_codes:
        return StepMessage(name=step.name, status="succeeded", output=output, exit_code=exit_code)
    expected = ", ".join(map(str, config.expected_exit_codes))
    return StepMessage(
        name=step.name,
        status="failed",
        output=output,
        exit_code=exit_code,
        error=f"exit code {exit_code}; expected {expected}",
    )


def _copy_data(config: WinrmCopyConfig, ctx: TemplateContext, env: StepEnv) -> bytes:
    if config.content is not None:
        return render_text(config.content, ctx).encode("utf-8")
    assert config.local_path is not None
    return env.local_path(render_text(config.local_path, ctx)).read_bytes()


def _copy(shell: _Shell, remote_path: str, data: bytes) -> str:
    """Write ``data`` in chunks, then return the remote file's SHA-256 (hex, lower case)."""
    chunks = [data[i : i + COPY_CHUNK_BYTES] for i in range(0, len(data), COPY_CHUNK_BYTES)] or [b""]
    for index, chunk in enumerate(chunks):
        code, stderr = shell.powershell(copy_chunk_script(remote_path, chunk, first=index == 0), lambda _: None)
        if code != 0:
            raise WinrmFailure(
                f"writing chunk {index} of {remote_path} failed (exit code {code}): {clean_clixml(stderr)}"
            )
    received = bytearray()
    code, stderr = shell.powershell(copy_hash_script(remote_path), received.extend)
    if code != 0:
        raise WinrmFailure(f"hashing {remote_path} failed (exit code {code}): {clean_clixml(stderr)}")
    return received.decode("utf-8", errors="replace").strip().lower()


async def run_winrm_copy(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Copy a local file (or text) to ``remote_path`` and check its hash."""
    config = step.config
    assert isinstance(config, WinrmCopyConfig)
    endpoint = render_url(config.endpoint, ctx)
    if not _is_https(endpoint):
        return StepMessage(name=step.name, status="failed", error=f"endpoint must be https://, got {endpoint!r}")
    remote_path = render_text(config.remote_path, ctx)
    ca_pem = ctx.secrets[config.ca_secret] if config.ca_secret is not None else None
    try:
        data = _copy_data(config, ctx, env)
    except (PathOutsideWorkdir, OSError) as exc:
        return StepMessage(name=step.name, status="failed", error=f"cannot read the local file: {exc}")
    digest = hashlib.sha256(data).hexdigest()
    stop = threading.Event()
    with _ca_file(env, ca_pem) as ca_path:

        def run() -> str:
            with _Shell(_protocol(config, ctx, endpoint, ca_path), stop) as shell:
                return _copy(shell, remote_path, data)

        try:
            remote_digest = await run_blocking(run, name=f"winrm-{step.name}")
        except (WinrmFailure, WinRMError, WinRMTransportError, OSError, ValueError) as exc:
            return StepMessage(name=step.name, status="failed", error=_describe(exc, endpoint))
        except BaseException:
            stop.set()
            raise
    output: dict[str, Any] = {"bytes": len(data), "sha256": digest, "path": remote_path}
    if remote_digest != digest:
        return StepMessage(
            name=step.name,
            status="failed",
            output=output,
            error=f"the copy of {remote_path} has SHA-256 {remote_digest or '(none)'}, expected {digest}",
        )
    env.emitter.log("system", step.name, f"copied {len(data)} bytes to {remote_path} (SHA-256 checked)")
    return StepMessage(name=step.name, status="succeeded", output=output)
