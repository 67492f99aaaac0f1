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
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

from automation_executor.child.blocking import timed_out
from automation_executor.child.emitter import Emitter
from automation_executor.child.env import PathOutsideWorkdir, StepEnv
from automation_executor.domain.lines import LineSplitter
from automation_executor.domain.protocol import ChildSpec, LogStream, StepMessage
from automation_executor.domain.redact import Redactor
from automation_executor.domain.steps import ParsedStep, ShellConfig
from automation_executor.domain.templates import TemplateContext, render_shell, render_text
from automation_executor.processes import Spawned, stop
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


class _Relay:
    """Turns one stream's chunks into log lines (and, for stdout, the step's tail)."""

    def __init__(self, stream: LogStream, step: str, emitter: Emitter, tail: Tail | None) -> None:
        self._stream, self._step, self._emitter, self._tail = stream, step, emitter, tail
        self._splitter = LineSplitter(emitter.split_bytes)  # redacted, then cut to the line cap, by the emitter

    def feed(self, chunk: bytes) -> None:
        if self._tail is not None:
            self._tail.add(chunk)
        for line in self._splitter.feed(chunk):
            self._emitter.log(self._stream, self._step, line)

    def close(self) -> None:
        for line in self._splitter.flush():
            self._emitter.log(self._stream, self._step, line)


async def _relay(reader: asyncio.StreamReader | None, relay: _Relay) -> None:
    if reader is None:
        return
    try:
        while chunk := await reader.read(READ_CHUNK):
            relay.feed(chunk)
    finally:
        relay.close()


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


class BadWorkingDirectory(Exception):
    """A step's ``cwd`` (after its templates) that is not a directory inside the working directory."""


def command_cwd(config: ShellConfig, ctx: TemplateContext, env: StepEnv) -> str:
    """The directory the command runs in: the step's ``cwd`` with its templates rendered as literal text
    (like any path), inside the execution's working directory; :class:`BadWorkingDirectory` otherwise."""
    if not config.cwd:
        return env.workdir
    relative = render_text(config.cwd, ctx)
    try:
        path = env.local_path(relative)
    except PathOutsideWorkdir:
        raise BadWorkingDirectory(
            f"working directory {relative!r} is not inside the execution's working directory"
        ) from None
    if not path.exists():
        raise BadWorkingDirectory(f"working directory not found: {relative}")
    if not path.is_dir():
        raise BadWorkingDirectory(f"working directory is not a directory: {relative}")
    return str(Path(env.workdir, relative))


def _command(
    step: ParsedStep, ctx: TemplateContext, env: StepEnv
) -> tuple[ShellConfig, list[str], dict[str, str], str]:
    """The step's config, argv (sandboxed when asked), environment and working directory
    (:class:`BadWorkingDirectory` when its ``cwd`` is not a directory of the working directory)."""
    config = step.config
    assert isinstance(config, ShellConfig)
    workdir = env.workdir
    argv = build_argv(config, ctx)
    environment = command_environment(env.spec, workdir) | {k: render_text(v, ctx) for k, v in config.env.items()}
    cwd = command_cwd(config, ctx, env)
    if config.sandbox == "bubblewrap":
        argv = wrap_argv(argv, workdir=workdir, network=config.network, cwd=cwd)
        cwd = workdir
    return config, argv, environment, cwd


def _not_started(step: ParsedStep, argv: list[str], exc: OSError, cwd: str | None = None) -> StepMessage:
    """The step's result when its command could not be started (``cwd``: the directory it was to run in)."""
    if isinstance(exc, FileNotFoundError) and cwd is not None and exc.filename == cwd:  # removed meanwhile
        return StepMessage(name=step.name, status="failed", error=f"working directory not found: {cwd}")
    if isinstance(exc, FileNotFoundError):
        missing = argv[0] if exc.filename in {None, argv[0]} else str(exc.filename)
        return StepMessage(name=step.name, status="failed", exit_code=127, error=f"not found: {missing}")
    if isinstance(exc, PermissionError):
        return StepMessage(name=step.name, status="failed", exit_code=126, error=f"cannot execute: {exc}")
    return StepMessage(name=step.name, status="failed", error=f"cannot start the command: {exc}")


def _finished(
    step: ParsedStep, config: ShellConfig, returncode: int, tail: Tail, env: StepEnv, *, lingering: bool
) -> StepMessage:
    """The step's result once its command exited (``lingering``: its output was still open after the drain)."""
    if lingering:
        env.emitter.log("system", step.name, "output still open after the command exited (background process?); closed")
    exit_code, how = _describe_exit(returncode)
    output = {"exit_code": exit_code, "stdout_tail": tail.text()}
    if exit_code in config.expected_exit_codes:
        return StepMessage(name=step.name, status="succeeded", output=output, exit_code=exit_code)
    if returncode < 0 and env.stopping():  # the stop's signal: what was expected does not matter
        return StepMessage(name=step.name, status="failed", output=output, exit_code=exit_code, error=how)
    expected = ", ".join(map(str, config.expected_exit_codes))
    return StepMessage(
        name=step.name,
        status="failed",
        output=output,
        exit_code=exit_code,
        error=f"{how}; expected {expected}",
    )


async def run_shell(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Run one shell step to completion (on the child's event loop)."""
    try:
        config, argv, environment, cwd = _command(step, ctx, env)
    except BadWorkingDirectory as exc:
        return StepMessage(name=step.name, status="failed", error=str(exc))
    emitter = env.emitter
    try:
        spawned = await env.spawn(argv, cwd=cwd, env=environment)
    except OSError as exc:
        return _not_started(step, argv, exc, cwd)
    tail = Tail(env.spec.stdout_tail_bytes, emitter.redactor)
    relays = [
        asyncio.create_task(_relay(spawned.process.stdout, _Relay("stdout", step.name, emitter, tail))),
        asyncio.create_task(_relay(spawned.process.stderr, _Relay("stderr", step.name, emitter, None))),
    ]
    try:
        returncode = await spawned.wait_exit()
        _, pending = await asyncio.wait(relays, timeout=DRAIN_AFTER_EXIT_SECONDS)
    except BaseException:
        await _kill(spawned, env.spec.kill_grace_seconds)
        raise
    finally:
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        spawned.close()
    return _finished(step, config, returncode, tail, env, lingering=bool(pending))


async def run_shell_blocking(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> StepMessage:
    """Run one shell step to completion without an event loop (the child's fast path).

    It never suspends, so the child drives it, and the check and steps around it, without asyncio
    (:func:`automation_executor.child.blocking.drive`). The step's ``timeout_seconds`` is kept here: the
    command gets SIGTERM, then SIGKILL after the grace period, and the step is ``timed_out``.
    """
    try:
        config, argv, environment, cwd = _command(step, ctx, env)
    except BadWorkingDirectory as exc:
        return StepMessage(name=step.name, status="failed", error=str(exc))
    emitter = env.emitter
    deadline = None if step.timeout_seconds is None else time.monotonic() + step.timeout_seconds
    try:
        process = subprocess.Popen(  # noqa: ASYNC220 - no event loop runs here: the blocking path (drive)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=environment,
        )
    except OSError as exc:
        return _not_started(step, argv, exc, cwd)
    tail = Tail(env.spec.stdout_tail_bytes, emitter.redactor)
    grace = env.spec.kill_grace_seconds
    with _Pump(process, _Relay("stdout", step.name, emitter, tail), _Relay("stderr", step.name, emitter, None)) as pump:
        try:
            pump.until(deadline)
        except _StepTimedOut:
            pump.stop(grace)
            return timed_out(step)
        except BaseException:  # SIGTERM (the child is being stopped): stop the command, relaying its last words
            pump.stop(grace)
            raise
    return _finished(step, config, process.wait(), tail, env, lingering=pump.lingering)


class _StepTimedOut(Exception):
    pass


class _Pump:
    """Relays a command's stdout and stderr while watching its exit (a pidfd), with no event loop."""

    def __init__(self, process: subprocess.Popen[bytes], stdout: _Relay, stderr: _Relay) -> None:
        assert process.stdout is not None
        assert process.stderr is not None
        self._process = process
        self._pipes = {process.stdout.fileno(): stdout, process.stderr.fileno(): stderr}
        self._selector = selectors.DefaultSelector()
        self._exit_fd = os.pidfd_open(process.pid)
        for fd in (*self._pipes, self._exit_fd):
            self._selector.register(fd, selectors.EVENT_READ)
        self._open = set(self._pipes)
        self._exited_at: float | None = None
        self.lingering = False
        """Whether output was still open when the drain after the exit ended (a background process)."""

    def __enter__(self) -> _Pump:
        return self

    def __exit__(self, *_: object) -> None:
        for relay in self._pipes.values():
            relay.close()
        self._selector.close()
        os.close(self._exit_fd)
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        self._process.stdout.close()
        self._process.stderr.close()

    def until(self, deadline: float | None) -> None:
        """Relay until the command exited and its pipes closed, or the drain time passed after its exit.

        Raises :class:`_StepTimedOut` when ``deadline`` (monotonic) comes before the exit.
        """
        while self._open or self._exited_at is None:
            now = time.monotonic()
            if self._exited_at is not None:
                wait = self._exited_at + DRAIN_AFTER_EXIT_SECONDS - now
                if wait <= 0:
                    self.lingering = True
                    return
            elif deadline is not None:
                wait = deadline - now
                if wait <= 0:
                    raise _StepTimedOut
            else:
                wait = None
            self._step(wait)

    def stop(self, grace: float) -> None:
        """SIGTERM, relaying output until the exit; SIGKILL if the command outlives ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
            if self._exited_at is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(sig)
            give_up = time.monotonic() + wait
            while self._exited_at is None and (left := give_up - time.monotonic()) > 0:
                self._step(left)
        self._process.wait()

    def _step(self, timeout: float | None) -> None:
        for key, _ in self._selector.select(timeout):
            if key.fd == self._exit_fd:
                self._selector.unregister(self._exit_fd)
                self._process.poll()
                self._exited_at = time.monotonic()
                continue
            chunk = os.read(key.fd, READ_CHUNK)
            if chunk:
                self._pipes[key.fd].feed(chunk)
            else:
                self._selector.unregister(key.fd)
                self._open.discard(key.fd)


async def _kill(spawned: Spawned, grace: float) -> None:
    """Stop the command when the step is cancelled (step timeout, or the executor's SIGTERM): SIGTERM, then
    SIGKILL after the whole grace period (``AUTOMATION_EXECUTOR_KILL_GRACE_SECONDS``), as the log says."""
    with contextlib.suppress(ProcessLookupError):
        await asyncio.shield(stop(spawned, grace=grace, group=False))
