"""Bubblewrap sandboxing of shell steps (``"sandbox": "bubblewrap"``).

:func:`wrap_argv` turns a command into ``bwrap <options> -- <command>``: the whole file system
read-only, private ``/tmp``, ``/var/tmp``, ``/dev/shm`` and ``/run`` (no host sockets such as the
database's), a minimal ``/dev`` and a fresh ``/proc``, the execution's working directory bind-mounted
writable at the same path, new PID/IPC/UTS (and cgroup, when possible) namespaces, no capabilities,
and no network (a new network namespace with only loopback) unless the step says ``"network": true``.
The sandbox dies with the step's process (``--die-with-parent``), and its commands stay in the child's
process group, so stopping the execution stops them. Resource limits are inherited.

:func:`probe_sandbox` tries exactly these options once at start (``bwrap`` missing, or unusable because
user namespaces are off, are the usual reasons); :func:`sandbox_refusal` is the error a run gets when a
step asks for the sandbox this executor cannot give. It is never silently run unsandboxed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_BWRAP = "/usr/bin/bwrap"
PROBE_TIMEOUT_SECONDS = 10.0
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run")  # noqa: S108 - mount points inside the sandbox


def bwrap_path() -> str | None:
    """The bubblewrap binary: ``/usr/bin/bwrap``, else ``bwrap`` on ``PATH``; None when there is none."""
    if os.access(DEFAULT_BWRAP, os.X_OK):
        return DEFAULT_BWRAP
    return shutil.which("bwrap")


def wrap_argv(argv: Sequence[str], *, workdir: str, network: bool, cwd: str | None = None) -> list[str]:
    """``argv`` run inside bubblewrap, with ``workdir`` writable and ``cwd`` (default ``workdir``) current."""
    bwrap = bwrap_path() or DEFAULT_BWRAP
    options = [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    for path in PRIVATE_DIRS:
        options += ["--tmpfs", path]
    options += [
        "--bind",
        workdir,
        workdir,
        "--chdir",
        cwd or workdir,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
    ]
    if not network:
        options.append("--unshare-net")
    return [*options, "--", *argv]


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """What the start-up probe found: ``problem`` is None when bubblewrap works."""

    problem: str | None

    @property
    def available(self) -> bool:
        return self.problem is None


async def probe_sandbox(timeout: float = PROBE_TIMEOUT_SECONDS) -> SandboxStatus:
    """Run ``true`` in the strictest sandbox this executor builds (no network); why not, if it fails."""
    if bwrap_path() is None:
        return SandboxStatus(f"bubblewrap is not installed ({DEFAULT_BWRAP} not found, no bwrap on PATH)")
    with tempfile.TemporaryDirectory(prefix="automation-sandbox-probe-") as workdir:
        argv = wrap_argv(["/bin/sh", "-c", "touch probe && ! touch /"], workdir=workdir, network=False)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return SandboxStatus(f"bubblewrap cannot be started: {exc}")
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return SandboxStatus(f"bubblewrap did not answer within {timeout:g}s")
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip()[-300:] or f"exit code {process.returncode}"
            return SandboxStatus(f"bubblewrap is not usable here: {detail}")
    return SandboxStatus(None)


def _asks_for_sandbox(config: Mapping[str, Any]) -> bool:
    return config.get("sandbox") == "bubblewrap" or config.get("network") is False


def sandbox_refusal(steps: Iterable[Any], status: SandboxStatus) -> str | None:
    """The error of a run whose shell step asks for a sandbox this executor cannot give, else None.

    ``steps`` are the job's :class:`~automation_contracts.StepSpec` (``name``, ``type``, ``config``).
    """
    if status.available:
        return None
    for step in steps:
        if step.type == "shell" and isinstance(step.config, Mapping) and _asks_for_sandbox(step.config):
            return (
                f"step {step.name}: asks for the bubblewrap sandbox, which this executor cannot give"
                f" ({status.problem}); it was not run"
            )
    return None
