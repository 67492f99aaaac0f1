"""Running one execution in a child process, under the job's timeout.

The child (``python -P -m automation_executor.child``) starts in its own session and process group,
in a fresh temporary working directory that is removed afterwards, with a minimal environment (none
of the executor's settings or secrets). It gets the :class:`ChildSpec` on stdin and reports on stdout;
its stderr is relayed as ``system`` log lines. When the job's ``timeout_seconds`` pass, the whole group
gets SIGTERM, then SIGKILL after ``executor_kill_grace_seconds``: the outcome is ``timed_out``. When the
run ends in any way, the group gets SIGKILL, so nothing a step left behind survives the execution.
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
from typing import Any

from pydantic import ValidationError

from automation_contracts import RunRequested
from automation_core.logging import get_logger
from automation_executor.domain.lines import LineSplitter
from automation_executor.domain.outcome import RunOutcome
from automation_executor.domain.protocol import (
    ChildSpec,
    Limits,
    LogMessage,
    ResultMessage,
    StepInput,
    StepMessage,
    parse_child_line,
)
from automation_executor.domain.steps import StepConfigError, parse_steps
from automation_executor.logstream import LogSink
from automation_executor.processes import Spawned, signal_group, spawn, stop
from automation_executor.settings import ExecutorSettings

log = get_logger(__name__)
CHILD_MODULE = "automation_executor.child"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_CHUNK = 64 * 1024
TAIL_READ_SECONDS = 1.0
"""After a timeout kill, how long the child's remaining output is still read."""


@dataclass
class _ChildState:
    outputs: dict[str, Any] = field(default_factory=dict)
    result: ResultMessage | None = None
    protocol_error: str | None = None
    last_stderr: str = ""


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


class ChildRunner:
    """Runs executions in child processes with this replica's limits."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self._settings = settings
        self._limits = Limits(
            open_files=settings.executor_max_open_files,
            address_space_bytes=settings.executor_max_address_space_bytes,
            cpu_seconds=settings.executor_max_cpu_seconds,
            file_size_bytes=settings.executor_max_file_size_bytes,
        )

    def child_spec(self, request: RunRequested) -> ChildSpec:
        """What the child gets on stdin."""
        s = self._settings
        return ChildSpec(
            execution_id=str(request.execution_id),
            attempt=request.attempt,
            steps=[StepInput.model_validate(step.model_dump(mode="json")) for step in request.job.steps],
            parameters=request.parameters,
            event=request.event.model_dump(mode="json") if request.event is not None else None,
            limits=self._limits,
            max_line_bytes=s.executor_max_line_bytes,
            stdout_tail_bytes=s.executor_stdout_tail_bytes,
            http_max_body_bytes=s.executor_http_max_body_bytes,
            kill_grace_seconds=s.executor_kill_grace_seconds,
            path=os.environ.get("PATH", DEFAULT_PATH),
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
        """Run the request's steps once; never raises for anything the job does."""
        try:
            parse_steps([step.model_dump(mode="json") for step in request.job.steps])
        except StepConfigError as exc:
            logs.add("system", None, f"invalid job definition: {exc}")
            return RunOutcome(status="failed", error=f"invalid job definition: {exc}", permanent=True)
        spec = self.child_spec(request)
        try:
            workdir = tempfile.mkdtemp(
                prefix=f"automation-{request.execution_id}-{request.attempt}-", dir=self._settings.executor_workdir_root
            )
        except OSError as exc:
            logs.add("system", None, f"cannot create the working directory: {exc}")
            return RunOutcome(status="failed", error=f"cannot create the working directory: {exc}")
        try:
            return await self._run_child(spec, request.job.timeout_seconds, workdir, logs)
        finally:
            await asyncio.shield(asyncio.to_thread(_remove_tree, workdir))

    async def _run_child(self, spec: ChildSpec, timeout: int, workdir: str, logs: LogSink) -> RunOutcome:
        try:
            spawned = await spawn(
                [sys.executable, "-P", "-m", CHILD_MODULE],
                cwd=workdir,
                env=self._child_environment(workdir),
                stdin=asyncio.subprocess.PIPE,
                new_session=True,
            )
        except OSError as exc:
            logs.add("system", None, f"cannot start the executor child process: {exc}")
            return RunOutcome(status="failed", error=f"cannot start the executor child process: {exc}")
        state = _ChildState()
        reading = asyncio.gather(self._read_protocol(spawned, state, logs), self._read_stderr(spawned, state, logs))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await self._send_spec(spawned, spec)
                    await asyncio.shield(reading)  # a timeout must not stop the reading: the child's last words count
                    returncode = await spawned.wait_exit()
            except TimeoutError:
                timed_out = True
                grace = self._settings.executor_kill_grace_seconds
                logs.add("system", None, f"timed out after {timeout}s: stopping (SIGTERM, SIGKILL after {grace:g}s)")
                returncode = await stop(spawned, grace=grace, group=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reading), TAIL_READ_SECONDS)
        except BaseException:
            signal_group(spawned.pid, signal.SIGKILL)
            await asyncio.shield(spawned.wait_exit())
            raise
        finally:
            signal_group(spawned.pid, signal.SIGKILL)  # whatever a step left running
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
        if timed_out:
            return RunOutcome(status="timed_out", error=f"timed out after {timeout}s", outputs=state.outputs)
        return self._outcome(state, returncode, logs)

    async def _send_spec(self, spawned: Spawned, spec: ChildSpec) -> None:
        stdin = spawned.process.stdin
        assert stdin is not None
        try:
            stdin.write(spec.model_dump_json().encode())
            await stdin.drain()
            stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            log.warning("child_stdin_closed_early", pid=spawned.pid)

    def _outcome(self, state: _ChildState, returncode: int, logs: LogSink) -> RunOutcome:
        result = state.result
        if result is not None:
            return RunOutcome(
                status=result.status,
                exit_code=result.exit_code,
                error=result.error,
                outputs=result.outputs,
            )
        reason = (
            state.protocol_error or f"the executor child process ended without a result ({_describe_exit(returncode)})"
        )
        if state.last_stderr:
            reason += f"; last words: {state.last_stderr}"
        logs.add("system", None, reason)
        return RunOutcome(status="failed", error=reason, outputs=state.outputs)

    async def _read_protocol(self, spawned: Spawned, state: _ChildState, logs: LogSink) -> None:
        reader = spawned.process.stdout
        assert reader is not None
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line over the stream limit: the child is not speaking the protocol
                state.protocol_error = "the executor child wrote an oversized protocol line"
                signal_group(spawned.pid, signal.SIGKILL)
                return
            if not line:
                return
            try:
                message = parse_child_line(line)
            except ValidationError:
                logs.add("system", None, f"unreadable line from the executor child: {line[:200]!r}")
                continue
            if isinstance(message, LogMessage):
                logs.add(message.stream, message.step, message.text, message.ts)
            elif isinstance(message, StepMessage):
                if message.output is not None:
                    state.outputs[message.name] = message.output
            else:
                state.result = message

    async def _read_stderr(self, spawned: Spawned, state: _ChildState, logs: LogSink) -> None:
        reader = spawned.process.stderr
        assert reader is not None
        splitter = LineSplitter(self._settings.executor_max_line_bytes)
        while chunk := await reader.read(STDERR_CHUNK):
            for line in splitter.feed(chunk):
                self._stderr_line(line, state, logs)
        for line in splitter.flush():
            self._stderr_line(line, state, logs)

    @staticmethod
    def _stderr_line(line: str, state: _ChildState, logs: LogSink) -> None:
        if line.strip():
            state.last_stderr = line.strip()[-500:]
            logs.add("system", None, f"executor child: {line}")
