"""Running one execution in a child process, under the job's timeout.

The child (``python -P -m automation_executor.child``) starts in its own session and process group,
in a fresh temporary working directory that is removed afterwards, with a minimal environment (none
of the executor's settings or secrets). It gets the :class:`ChildSpec` as the first line of its stdin
and reports on stdout; its stderr is relayed as ``system`` log lines. When the job's ``timeout_seconds``
pass, the whole group gets SIGTERM, then SIGKILL after ``executor_kill_grace_seconds``: the outcome is
``timed_out``. When the run ends in any way, the group gets SIGKILL, so nothing a step left behind
survives the execution.

The child's stdin stays open as the return path of the bridge: the child asks for secrets, event
publishing and browser tasks, and an :class:`~automation_executor.bridge.ExecutionBridge` answers each
request. Every secret value resolved for the run is redacted (``***``) from its log lines, step outputs,
result and error before anything is batched or recorded.

A job whose steps are all ``shell``, ``event.emit`` and ``browser`` steps runs no code of its own in a
child: when the command server is up, the runner runs its steps on this event loop and each command
is started by the command server, in its own process group under the same limits
(:mod:`automation_executor.direct`); the timeouts, the final SIGKILL of every command's group and the
outcome are the same.

With a check step, the outcome's ``outputs`` (the execution's ``result``) is
``{"performed": bool, "check": <check output>, "steps": {<name>: <output>}}``; without one, the outputs
by step name as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from automation_contracts import LogStream, RunRequested
from automation_core.logging import get_logger
from automation_executor.bridge import ExecutionBridge, PlatformServices
from automation_executor.child.limits import limit_plan
from automation_executor.child.main import RUNNERS, run_steps
from automation_executor.direct import Commands, LocalBridge, LocalEmitter, runs_direct
from automation_executor.domain.lines import LineSplitter
from automation_executor.domain.outcome import RunOutcome
from automation_executor.domain.protocol import (
    PROTOCOL_SLACK_BYTES,
    ChildSpec,
    Limits,
    LogMessage,
    RequestMessage,
    ResultMessage,
    StepInput,
    StepMessage,
    parse_child_line,
)
from automation_executor.domain.redact import Redactor
from automation_executor.domain.steps import ParsedStep, StepConfigError, parse_job
from automation_executor.forkserver.client import ForkServer
from automation_executor.launch import CURRENT_CHILD, active_command_server, active_fork_server, start_child
from automation_executor.logstream import LogSink
from automation_executor.processes import LineTooLong, Spawned, read_line, signal_group, stop
from automation_executor.secrets import SecretResolver, SecretsConfig
from automation_executor.settings import ExecutorSettings

log = get_logger(__name__)
CHILD_MODULE = "automation_executor.child"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_CHUNK = 64 * 1024
TAIL_READ_SECONDS = 1.0
"""After a timeout kill, how long the child's remaining output is still read."""
REDACTION_SLACK_BYTES = 16 * 1024
"""Extra line length kept before redacting the child's stderr, so a cut line cannot hide half a secret."""


@dataclass
class _ChildState:
    redactor: Redactor
    outputs: dict[str, Any] = field(default_factory=dict)
    check_output: Any = None
    result: ResultMessage | None = None
    protocol_error: str | None = None
    last_stderr: str = ""
    handlers: set[str] = field(default_factory=set)
    """The declared ``python`` handlers the child loaded."""

    def take(self, message: BaseModel) -> None:
        """Keep a step's output or the final result (secret values redacted)."""
        redact = self.redactor
        if isinstance(message, StepMessage):
            if message.handler is not None:
                self.handlers.add(message.handler)
            output = redact.value(message.output)
            if message.phase == "check":
                self.check_output = output
            elif output is not None:
                self.outputs[message.name] = output
        elif isinstance(message, ResultMessage):
            self.result = message.model_copy(
                update={
                    "outputs": redact.value(message.outputs),
                    "check_output": redact.value(message.check_output),
                    "error": redact.text(message.error) if message.error is not None else None,
                }
            )


class _RedactingSink:
    """The run's log sink, with every secret value redacted before the line is buffered."""

    def __init__(self, logs: LogSink, redactor: Redactor) -> None:
        self._logs = logs
        self._redactor = redactor

    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> None:
        self._logs.add(stream, step, self._redactor.text(text), ts)


def _remove_tree(path: str) -> None:
    """Remove a working directory, even one a step made read-only."""

    def make_writable(func: Any, target: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
            func(target)

    shutil.rmtree(path, onerror=make_writable)


def _describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def secrets_config(settings: ExecutorSettings) -> SecretsConfig:
    """Where this replica's secrets come from (``AUTOMATION_EXECUTOR_SECRETS_DIR``, ``..._SECRET_SOURCES``)."""
    return SecretsConfig(
        directory=settings.executor_secrets_dir,
        sources=SecretsConfig.parse_sources(settings.executor_secret_sources),
    )


def default_limits(settings: ExecutorSettings) -> Limits:
    """The resource limits every run's child (and every command it starts) gets, from the settings."""
    return Limits(
        open_files=settings.executor_max_open_files,
        address_space_bytes=settings.executor_max_address_space_bytes,
        cpu_seconds=settings.executor_max_cpu_seconds,
        file_size_bytes=settings.executor_max_file_size_bytes,
    )


class ChildRunner:
    """Runs executions in child processes with this replica's limits.

    ``services`` publish events and run browser tasks for the children (None: such steps fail, saying
    the service is unavailable); ``secrets`` resolves secret names (default: from the settings).
    """

    def __init__(
        self,
        settings: ExecutorSettings,
        *,
        services: PlatformServices | None = None,
        secrets: SecretResolver | None = None,
    ) -> None:
        self._settings = settings
        self._services = services
        self._secrets = secrets or SecretResolver(secrets_config(settings))
        self._direct = settings.executor_direct_commands
        self._limits = default_limits(settings)

    def child_spec(self, request: RunRequested) -> ChildSpec:
        """What the child gets on stdin."""
        s = self._settings
        check = request.job.check
        return ChildSpec(
            execution_id=str(request.execution_id),
            attempt=request.attempt,
            job_id=str(request.job_id),
            steps=[StepInput.model_validate(step.model_dump(mode="json")) for step in request.job.steps],
            check=StepInput.model_validate(check.model_dump(mode="json")) if check is not None else None,
            parameters=request.parameters,
            event=request.event.model_dump(mode="json") if request.event is not None else None,
            limits=self._limits,
            max_line_bytes=s.executor_max_line_bytes,
            stdout_tail_bytes=s.executor_stdout_tail_bytes,
            http_max_body_bytes=s.executor_http_max_body_bytes,
            kill_grace_seconds=s.executor_kill_grace_seconds,
            max_result_bytes=s.executor_max_result_bytes,
            path=os.environ.get("PATH", DEFAULT_PATH),
            fast_path=s.executor_child_fast_path,
        )

    def _child_environment(self, workdir: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", DEFAULT_PATH),
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if "PYTHONPATH" in os.environ:  # where the executor's own packages may come from
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env

    async def run(self, request: RunRequested, logs: LogSink) -> RunOutcome:
        """Run the request's check and steps once; never raises for anything the job does."""
        return await self.run_spec(self.child_spec(request), timeout=request.job.timeout_seconds, logs=logs)

    async def run_spec(self, spec: ChildSpec, *, timeout: int, logs: LogSink) -> RunOutcome:
        """Run a child spec once (what :meth:`run` does after building the spec from a request)."""
        try:
            job = parse_job(
                [step.model_dump(mode="json") for step in spec.steps],
                spec.check.model_dump(mode="json") if spec.check is not None else None,
            )
        except StepConfigError as exc:
            logs.add("system", None, f"invalid job definition: {exc}")
            return RunOutcome(status="failed", error=f"invalid job definition: {exc}", permanent=True)
        try:
            workdir = tempfile.mkdtemp(
                prefix=f"automation-{spec.execution_id}-{spec.attempt}-", dir=self._settings.executor_workdir_root
            )
        except OSError as exc:
            logs.add("system", None, f"cannot create the working directory: {exc}")
            return RunOutcome(status="failed", error=f"cannot create the working directory: {exc}")
        try:
            server = active_command_server() if self._direct and runs_direct(spec) else None
            if server is not None:
                return await self._run_direct(spec, server, timeout, workdir, logs, job=job)
            return await self._run_child(spec, timeout, workdir, logs)
        finally:
            try:
                os.rmdir(workdir)  # the common case, a run that left nothing behind: one system call
            except OSError:
                await asyncio.shield(asyncio.to_thread(_remove_tree, workdir))

    def _bridge(self, spec: ChildSpec, state: _ChildState) -> ExecutionBridge:
        return ExecutionBridge(
            execution_id=spec.execution_id,
            job_id=spec.job_id,
            attempt=spec.attempt,
            secrets=self._secrets,
            redactor=state.redactor,
            services=self._services,
        )

    async def _run_direct(
        self,
        spec: ChildSpec,
        server: ForkServer,
        timeout: int,
        workdir: str,
        logs: LogSink,
        *,
        job: tuple[ParsedStep | None, list[ParsedStep]],
    ) -> RunOutcome:
        """Run a job without a child on this event loop, each command from the command server
        (:mod:`automation_executor.direct`); ``job`` is the spec's check and steps, parsed once by run_spec."""
        state = _ChildState(redactor=Redactor())
        emitter = LocalEmitter(logs, state.redactor, state.take, spec.max_line_bytes)
        plan, applied = limit_plan(spec.limits)
        commands = Commands(server, plan, CURRENT_CHILD.get())
        emitter.log("system", None, f"limits: {', '.join(applied)}")
        bridge = LocalBridge(emitter, self._bridge(spec, state))
        run = asyncio.create_task(
            run_steps(spec, emitter, bridge, workdir=workdir, spawn=commands, job=job, stopping=commands.stopping)
        )
        try:
            await asyncio.wait({run}, timeout=timeout)
            if not run.done():
                grace = self._settings.executor_kill_grace_seconds
                emitter.log("system", None, f"timed out after {timeout}s: stopping (SIGTERM, SIGKILL after {grace:g}s)")
                commands.signal_all(signal.SIGTERM)
                run.cancel()
                await asyncio.wait({run}, timeout=grace + TAIL_READ_SECONDS)
                commands.signal_all(signal.SIGKILL)
                await asyncio.wait({run}, timeout=TAIL_READ_SECONDS)
                return RunOutcome(
                    status="timed_out", error=f"timed out after {timeout}s", outputs=self._outputs(spec, state)
                )
            returncode = run.result()
        except Exception as exc:
            log.exception("direct_run_crashed")
            error = f"the executor failed running the steps: {type(exc).__name__}: {exc}"
            emitter.log("system", None, error)
            return RunOutcome(status="failed", error=error, outputs=self._outputs(spec, state))
        except BaseException:  # the run is being stopped (cancellation, lost lease, shutdown)
            commands.signal_all(signal.SIGKILL)
            run.cancel()
            await asyncio.shield(asyncio.wait({run}, timeout=TAIL_READ_SECONDS))
            raise
        finally:
            commands.signal_all(signal.SIGKILL)  # whatever a step left running
            if not run.done():
                run.cancel()
        return self._outcome(spec, state, returncode, logs)

    async def _run_child(self, spec: ChildSpec, timeout: int, workdir: str, logs: LogSink) -> RunOutcome:
        try:
            spawned = await start_child(
                [sys.executable, "-P", "-m", CHILD_MODULE], cwd=workdir, env=self._child_environment(workdir)
            )
        except OSError as exc:
            logs.add("system", None, f"cannot start the executor child process: {exc}")
            return RunOutcome(status="failed", error=f"cannot start the executor child process: {exc}")
        state = _ChildState(redactor=Redactor())
        sink = _RedactingSink(logs, state.redactor)
        replies = _Replies(spawned, self._bridge(spec, state))
        reading = asyncio.gather(
            self._read_protocol(spawned, state, sink, replies, spec.max_result_bytes + PROTOCOL_SLACK_BYTES),
            self._read_stderr(spawned, state, sink),
        )
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await replies.send_line(spec.model_dump_json().encode())
                    await asyncio.shield(reading)  # a timeout must not stop the reading: the child's last words count
                    returncode = await spawned.wait_exit()
            except TimeoutError:
                timed_out = True
                grace = self._settings.executor_kill_grace_seconds
                sink.add("system", None, f"timed out after {timeout}s: stopping (SIGTERM, SIGKILL after {grace:g}s)")
                returncode = await stop(spawned, grace=grace, group=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reading), TAIL_READ_SECONDS)
        except BaseException:
            signal_group(spawned.pid, signal.SIGKILL)
            await asyncio.shield(spawned.wait_exit())
            raise
        finally:
            signal_group(spawned.pid, signal.SIGKILL)  # whatever a step left running
            await replies.close()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
        self._learn(spec, state)
        if timed_out:
            return RunOutcome(
                status="timed_out", error=f"timed out after {timeout}s", outputs=self._outputs(spec, state)
            )
        return self._outcome(spec, state, returncode, sink)

    def _learn(self, spec: ChildSpec, state: _ChildState) -> None:
        """Have the fork server import, for later children, the modules of the handlers this child loaded
        and of the step runners its job used (those it does not preload: ssh, winrm)."""
        server = active_fork_server()
        if server is None:
            return
        if state.handlers and self._settings.executor_preload_handlers:
            server.learn(state.handlers)
        if self._settings.executor_preload_step_runners:
            server.learn_modules(RUNNERS[kind].split(":")[0] for kind in spec.step_types() if kind in RUNNERS)

    @staticmethod
    def _outputs(spec: ChildSpec, state: _ChildState, performed: bool | None = None) -> dict[str, Any]:
        """The execution's result: outputs by step name, or both phases when the job has a check."""
        if spec.check is None:
            return state.outputs
        if performed is None:
            performed = bool(state.outputs)
        return {"performed": performed, "check": state.check_output, "steps": state.outputs}

    def _outcome(self, spec: ChildSpec, state: _ChildState, returncode: int, logs: LogSink) -> RunOutcome:
        result = state.result
        if result is not None:
            if result.check_output is not None:
                state.check_output = result.check_output
            state.outputs = result.outputs
            return RunOutcome(
                status=result.status,
                exit_code=result.exit_code,
                error=result.error,
                outputs=self._outputs(spec, state, result.performed),
            )
        handle = CURRENT_CHILD.get()
        if state.protocol_error is not None:
            reason = state.protocol_error
        elif handle is not None and handle.stopping:
            reason = f"the executor child process ended on the stop ({_describe_exit(returncode)})"
        else:
            reason = f"the executor child process ended without a result ({_describe_exit(returncode)})"
        if state.last_stderr:
            reason += f"; last words: {state.last_stderr}"
        logs.add("system", None, reason)
        return RunOutcome(status="failed", error=reason, outputs=self._outputs(spec, state))

    async def _read_protocol(
        self, spawned: Spawned, state: _ChildState, logs: LogSink, replies: _Replies, max_line: int
    ) -> None:
        """Read the child's protocol lines: a step's output may be long (``max_result_bytes``, which the child
        keeps to), so a line is read in pieces up to ``max_line`` (:func:`read_line`)."""
        reader = spawned.process.stdout
        assert reader is not None
        while True:
            try:
                line = await read_line(reader, max_line)
            except LineTooLong:  # more than the child may write: it is not speaking the protocol
                state.protocol_error = f"the executor child wrote an oversized protocol line (over {max_line} bytes)"
                signal_group(spawned.pid, signal.SIGKILL)
                return
            if not line:
                return
            try:
                message = parse_child_line(line)
            except ValidationError:
                logs.add("system", None, f"unreadable line from the executor child: {bytes(line[:200])!r}")
                continue
            if isinstance(message, LogMessage):
                logs.add(message.stream, message.step, message.text, message.ts)
            elif isinstance(message, RequestMessage):
                replies.answer(message)
            else:
                state.take(message)

    async def _read_stderr(self, spawned: Spawned, state: _ChildState, logs: LogSink) -> None:
        reader = spawned.process.stderr
        assert reader is not None
        splitter = LineSplitter(self._settings.executor_max_line_bytes + REDACTION_SLACK_BYTES)
        while chunk := await reader.read(STDERR_CHUNK):
            for line in splitter.feed(chunk):
                self._stderr_line(line, state, logs)
        for line in splitter.flush():
            self._stderr_line(line, state, logs)

    @staticmethod
    def _stderr_line(line: str, state: _ChildState, logs: LogSink) -> None:
        if line.strip():
            state.last_stderr = state.redactor.text(line.strip())[-500:]
            logs.add("system", None, f"executor child: {line}")


class _Replies:
    """Writes to the child's stdin: the spec, then the bridge's replies (one task per request)."""

    def __init__(self, spawned: Spawned, bridge: ExecutionBridge) -> None:
        self._stdin = spawned.process.stdin
        self._bridge = bridge
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pid = spawned.pid

    async def send_line(self, data: bytes) -> None:
        assert self._stdin is not None
        async with self._lock:
            try:
                self._stdin.write(data + b"\n")
                await self._stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                log.warning("child_stdin_closed_early", pid=self._pid)

    def answer(self, request: RequestMessage) -> None:
        """Serve ``request`` in the background (the protocol keeps being read meanwhile)."""
        task = asyncio.create_task(self._answer(request), name=f"bridge-{request.op}-{request.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: RequestMessage) -> None:
        reply = await self._bridge.handle(request)
        await self.send_line(reply.model_dump_json().encode())

    async def close(self) -> None:
        """Cancel unanswered requests and close the child's stdin."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stdin is not None:
            self._stdin.close()
