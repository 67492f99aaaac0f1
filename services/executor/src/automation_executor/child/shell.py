"""The ``shell`` step: one command, its output relayed line by line.

The command runs with an argv list (no shell), or as ``/bin/sh -c <script>`` when the step says
``"shell": true`` (templates then ``shlex``-quoted); with ``"sandbox": "bubblewrap"`` it runs inside
bubblewrap (:func:`automation_executor.sandbox.wrap_argv`). Its environment is minimal (``PATH``, ``HOME`` and
``TMPDIR`` pointing at the execution's working directory, ``LANG``) plus the step's ``env``: nothing of
the executor's own environment (database URL, keys) reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from automation_executor.child.emitter import Emitter
from automation_executor.child.env import StepEnv
from automation_executor.domain.lines import LineSplitter
from automation_executor.domain.protocol import ChildSpec, LogStream, StepMessage
from automation_executor.domain.redact import Redactor
from automation_executor.domain.steps import ParsedStep, ShellConfig
from automation_executor.domain.templates import TemplateContext, render_shell, render_text
from automation_executor.processes import Spawned, spawn, stop
from automation_executor.sandbox import wrap_argv

READ_CHUNK = 64 * 1024
DRAIN_AFTER_EXIT_SECONDS = 1.0
"""How long output is still read after the command exited (background processes may hold its pipes)."""


class Tail:
    """The last ``size`` bytes written to a stream, with secret values redacted.

    It keeps room for the longest secret before the cut, so a secret crossing the start of the tail is
    still recognised and redacted rather than left half visible.
    """

    def __init__(self, size: int, redactor: Redactor | None = None) -> None:
        self._size = size
        self._redactor = redactor if redactor is not None else Redactor()
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        if self._size <= 0:
            return
        self._data += chunk
        keep = self._size + 4 * self._redactor.longest
        if len(self._data) > keep:
            del self._data[: len(self._data) - keep]

    def text(self) -> str:
        text = self._redactor.text(bytes(self._data).decode("utf-8", errors="replace"))
        encoded = text.encode("utf-8")
        if len(encoded) <= self._size:
            return text
        return encoded[len(encoded) - self._size :].decode("utf-8", errors="ignore")


def command_environment(spec: ChildSpec, workdir: str) -> dict[str, str]:
    """The base environment of every command."""
    return {
        "PATH": spec.path,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "AUTOMATION_EXECUTION_ID": spec.execution_id,
        "AUTOMATION_ATTEMPT": str(spec.attempt),
    }


def build_argv(config: ShellConfig, ctx: TemplateContext) -> list[str]:
    """The argv to execute: templates rendered as whole arguments, or a quoted ``sh -c`` script."""
    if isinstance(config.command, str):
        return ["/bin/sh", "-c", render_shell(config.command, ctx)]
    return [render_text(arg, ctx) for arg in config.command]


async def _relay(
    reader: asyncio.StreamReader | None, stream: LogStream, step: str, emitter: Emitter, tail: Tail | None
) -> None:
    if reader is None:
        return
    splitter = LineSplitter(emitter.split_bytes)  # redacted, then cut to the line cap, by the emitter
    try:
        while chunk := await reader.read(READ_CHUNK):
            if tail is not None:
                tail.add(chunk)
            for line in splitter.feed(chunk):
                emitter.log(stream, step, line)
    finally:
        for line in splitter.flush():
            emitter.log(stream, step, line)


def _describe_exit(returncode: int) -> tuple[int, str]:
    """Exit code in shell convention (128+n for signal n) and how the command ended."""
    if returncode >= 0:
        return returncode, f"exit code {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return 128 + number, f"killed by {name} (exit code {128 + number})"


async def run_shell(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Run one shell step to completion."""
    config = step.config
    assert isinstance(config, ShellConfig)
    emitter, spec = env.emitter, env.spec
    workdir = env.workdir
    argv = build_argv(config, ctx)
    environment = command_environment(spec, workdir) | {k: render_text(v, ctx) for k, v in config.env.items()}
    cwd = str(Path(workdir, config.cwd)) if config.cwd else workdir
    if config.sandbox == "bubblewrap":
        argv = wrap_argv(argv, workdir=workdir, network=config.network, cwd=cwd)
        cwd = workdir
    try:
        spawned = await spawn(argv, cwd=cwd, env=environment)
    except FileNotFoundError as exc:
        missing = argv[0] if exc.filename in {None, argv[0]} else str(exc.filename)
        return StepMessage(name=step.name, status="failed", exit_code=127, error=f"not found: {missing}")
    except PermissionError as exc:
        return StepMessage(name=step.name, status="failed", exit_code=126, error=f"cannot execute: {exc}")
    except OSError as exc:
        return StepMessage(name=step.name, status="failed", error=f"cannot start the command: {exc}")
    tail = Tail(spec.stdout_tail_bytes, emitter.redactor)
    relays = [
        asyncio.create_task(_relay(spawned.process.stdout, "stdout", step.name, emitter, tail)),
        asyncio.create_task(_relay(spawned.process.stderr, "stderr", step.name, emitter, None)),
    ]
    try:
        returncode = await spawned.wait_exit()
        _, pending = await asyncio.wait(relays, timeout=DRAIN_AFTER_EXIT_SECONDS)
    except BaseException:
        await _kill(spawned, spec.kill_grace_seconds)
        raise
    finally:
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
    if pending:
        emitter.log("system", step.name, "output still open after the command exited (background process?); closed")
    exit_code, how = _describe_exit(returncode)
    output = {"exit_code": exit_code, "stdout_tail": tail.text()}
    if exit_code in config.expected_exit_codes:
        return StepMessage(name=step.name, status="succeeded", output=output, exit_code=exit_code)
    expected = ", ".join(map(str, config.expected_exit_codes))
    return StepMessage(
        name=step.name,
        status="failed",
        output=output,
        exit_code=exit_code,
        error=f"{how}; expected {expected}",
    )


async def _kill(spawned: Spawned, grace: float) -> None:
    """Stop the command when the step is cancelled (step timeout, or the executor's SIGTERM)."""
    with contextlib.suppress(ProcessLookupError):
        await asyncio.shield(stop(spawned, grace=min(grace, 2.0), group=False))
