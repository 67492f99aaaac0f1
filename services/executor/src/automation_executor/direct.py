"""Jobs that run no code of their own in a child, run by the executor itself: no Python child per execution.

When every step of a job (and its check) is a ``shell``, ``event.emit``, ``browser`` or ``http`` step, the child
process would only start commands, relay their output, send requests and forward others to the executor, and it
costs more than the commands do: a fork of the ~45 MiB fork
server, its copy-on-write faults, the spec's parsing and a JSON line per log line, ~8 ms of CPU per run
against ~1 ms for a ``true`` command. So the runner (:meth:`~automation_executor.runner.ChildRunner.run`)
runs such a job's orchestration on its own event loop (the same :func:`~automation_executor.child.main.run_steps`
as the child: check, templates, secrets and redaction, line cap, step timeouts; an ``event.emit`` or
``browser`` step's request goes straight to the run's :class:`~automation_executor.bridge.ExecutionBridge`,
and an ``http`` step's request is sent from here, with the SSL context and imports prepared at start-up)
and starts each command from the *command server* (:func:`~automation_executor.launch.command_server`):
a fork server with nothing preloaded (~12 MiB) that starts the command in a new session (its own
process group) in the execution's working directory with the command's environment, under the job's
resource limits (see :mod:`automation_executor.forkserver.server`). What the job runs is isolated as before:

- every command runs in a session and process group of its own, under the same resource limits the
  child would have set on itself (they were the child's, and every command inherited them);
- no command is a child of the executor: the command server is their parent. When the executor dies
  (even by SIGKILL) the server kills every command's process group and exits, as the fork server does
  with its children;
- when the run ends in any way, every command's group gets SIGKILL (whatever a step left running); on
  the job's timeout they first get SIGTERM, then SIGKILL after the grace period;
- a cancellation sends SIGTERM to the group of the command running (the handle in
  :data:`~automation_executor.launch.CURRENT_CHILD`).

``AUTOMATION_EXECUTOR_DIRECT_COMMANDS=false`` runs these jobs in a child like every other job; so does a
replica whose command server cannot start (or died: it is restarted within 30 s).
"""

from __future__ import annotations

import errno
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from automation_executor.bridge import ExecutionBridge
from automation_executor.child.bridge import BridgeClient, result_of
from automation_executor.child.emitter import Emitter
from automation_executor.domain.lines import cut_line
from automation_executor.domain.protocol import BridgeOp, ChildSpec, LogMessage, LogStream, RequestMessage
from automation_executor.domain.redact import Redactor
from automation_executor.forkserver.client import ForkServer, ForkServerUnavailable
from automation_executor.launch import ChildHandle
from automation_executor.logstream import LogSink
from automation_executor.metrics import CHILD_LAUNCH
from automation_executor.processes import Spawned, signal_group
from automation_executor.rlimits import Plan

DIRECT_KINDS = frozenset({"shell", "event.emit", "browser", "http"})
"""Step types that run no code of the job's in a child: a command runs as its own process, an
``event.emit`` or a ``browser`` step only asks the executor (over the bridge) to publish or to send a task,
and an ``http`` step is one request, which the executor sends itself (its body capped: see below)."""
DIRECT_HTTP_MAX_BODY_BYTES = 1024 * 1024
"""The largest response body an ``http`` step may keep (its ``max_body_bytes``, else the setting) for the
executor to send it itself: the body and its parsed JSON live in the executor's memory, outside the job's
address-space limit, and are parsed on its event loop. A step that keeps more runs in a child."""


def runs_direct(spec: ChildSpec) -> bool:
    """Whether every step and the check of ``spec`` is of :data:`DIRECT_KINDS` (an ``http`` step keeping at
    most :data:`DIRECT_HTTP_MAX_BODY_BYTES` of its response)."""
    if not spec.step_types() <= DIRECT_KINDS:
        return False
    steps = [*spec.steps, *([spec.check] if spec.check is not None else [])]
    return all(_kept_body(step.config, spec) <= DIRECT_HTTP_MAX_BODY_BYTES for step in steps if step.type == "http")


def _kept_body(config: Mapping[str, Any], spec: ChildSpec) -> int:
    cap = config.get("max_body_bytes")
    return cap if isinstance(cap, int) else spec.http_max_body_bytes


class LocalEmitter(Emitter):
    """The emitter of a run in the executor: log lines go to the run's sink, results to ``on_message``."""

    def __init__(
        self, logs: LogSink, redactor: Redactor, on_message: Callable[[BaseModel], None], max_line_bytes: int
    ) -> None:
        super().__init__(-1, max_line_bytes)
        self.redactor = redactor
        self._logs = logs
        self._on_message = on_message

    def send(self, message: BaseModel) -> None:
        if isinstance(message, LogMessage):
            self._logs.add(message.stream, message.step, message.text, message.ts)
        else:
            self._on_message(message)

    def log(self, stream: LogStream, step: str | None, text: str) -> None:
        self._logs.add(stream, step, cut_line(self.redactor.text(text), self.max_line_bytes), datetime.now(UTC))


class LocalBridge(BridgeClient):
    """The bridge of a run in the executor: requests go straight to its :class:`ExecutionBridge`."""

    def __init__(self, emitter: Emitter, bridge: ExecutionBridge) -> None:
        super().__init__(emitter, None)
        self._bridge = bridge
        self._numbers = 0

    async def request(self, op: BridgeOp, args: dict[str, Any], *, step: str | None) -> Any:
        self._numbers += 1
        reply = await self._bridge.handle(RequestMessage(id=self._numbers, op=op, step=step, args=args))
        return result_of(op, reply)


class Commands:
    """Starts a run's commands from the command server and keeps their process groups.

    ``handle`` (the run's slot) learns the pid of each command as it starts, so a cancellation
    signals the group of the command running.
    """

    def __init__(self, server: ForkServer, rlimits: Plan, handle: ChildHandle | None) -> None:
        self._server = server
        self._rlimits = rlimits
        self._handle = handle
        self.groups: list[int] = []
        if handle is not None:
            handle.launcher = "command-server"

    def stopping(self) -> bool:
        """Whether the run's slot is stopping it (a cancellation): no command starts then."""
        return self._handle is not None and self._handle.stopping

    async def __call__(self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str]) -> Spawned:
        if self.stopping():
            raise OSError(errno.ECANCELED, "the run is being stopped")
        started = time.perf_counter()
        try:
            spawned = await self._server.execute(argv, cwd=cwd, env=env, rlimits=self._rlimits)
        except ForkServerUnavailable as exc:
            raise OSError(errno.EAGAIN, f"the command server is unavailable: {exc}") from exc
        CHILD_LAUNCH.labels("command-server").observe(time.perf_counter() - started)
        self.groups.append(spawned.pid)
        if self._handle is not None:
            self._handle.pid, self._handle.launcher = spawned.pid, "command-server"
        return spawned

    def signal_all(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group of every command the run started."""
        for group in self.groups:
            signal_group(group, sig)
