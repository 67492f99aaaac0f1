"""The child's main loop: read the spec, apply limits, run the check and the steps, report the result.

File descriptors: the protocol goes out on a copy of the original stdout (fd 1 then points at stderr, so
a stray ``print`` never corrupts it); the executor's replies come in on a copy of the original stdin
(fd 0 then reads ``/dev/null``, so no command or handler can swallow a reply).

Before a step runs, every secret it names (``${{ secrets.X }}`` and ``*_secret`` fields) is asked of the
executor; an unknown one fails the step, naming it. A job's check step runs first: when it says
``should_perform: false`` the run succeeds without running the steps.

**Two ways to run.** A job whose steps (and check) are all ``shell`` and ``python`` steps runs on the
*blocking path* (:mod:`automation_executor.child.blocking`): no event loop is started; a command is run
with :func:`subprocess.Popen` and its output read with a selector, a handler runs in its thread while
the child waits on its future, and the same orchestration coroutines (:func:`run_steps`) are driven
to the end in one ``send``, since nothing on that path ever waits for a loop. That saves the event
loop's start and stop and asyncio's subprocess transports: ~2 ms of a child's ~10 ms of CPU. Any
other job runs on an asyncio event loop. ``ChildSpec.fast_path`` (the executor's
``AUTOMATION_EXECUTOR_CHILD_FAST_PATH``) turns the blocking path off.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from pydantic_core import to_json

from automation_contracts.storable import storable_value
from automation_executor.child.blocking import LineReader, Terminated, drive, timed_out
from automation_executor.child.bridge import BlockingBridge, BridgeClient, BridgeFailure
from automation_executor.child.emitter import Emitter
from automation_executor.child.env import CommandSpawner, StepEnv
from automation_executor.child.limits import apply_limits
from automation_executor.domain.check import CheckError, check_decision
from automation_executor.domain.protocol import ChildSpec, Phase, ResultMessage, StepMessage
from automation_executor.domain.steps import ParsedStep, StepConfigError, parse_job
from automation_executor.domain.templates import TemplateContext, TemplateError

EXIT_TERMINATED = 128 + signal.SIGTERM
SPEC_LINE_LIMIT = 64 * 1024 * 1024
StepRunner = Callable[[ParsedStep, TemplateContext, StepEnv], Awaitable[StepMessage]]
RUNNERS: dict[str, str] = {
    "shell": "automation_executor.child.shell:run_shell",
    "http": "automation_executor.child.http:run_http",
    "python": "automation_executor.child.python_step:run_python",
    "event.emit": "automation_executor.child.events:run_event_emit",
    "browser": "automation_executor.child.browser:run_browser",
    "ssh.exec": "automation_executor.child.ssh:run_ssh_exec",
    "sftp.upload": "automation_executor.child.ssh:run_sftp_upload",
    "sftp.download": "automation_executor.child.ssh:run_sftp_download",
    "winrm.exec": "automation_executor.child.winrm:run_winrm_exec",
    "winrm.copy": "automation_executor.child.winrm:run_winrm_copy",
}
"""Each step kind's runner, imported when a step of the kind first runs (asyncssh, pywinrm and httpx are
heavy imports; a run of shell steps never pays for them)."""
BLOCKING_RUNNERS: dict[str, str] = {
    "shell": "automation_executor.child.shell:run_shell_blocking",
    "python": "automation_executor.child.python_step:run_python_blocking",
}
"""The runners of the blocking path: coroutines that never wait for an event loop."""


def runner_for(kind: str, *, blocking: bool = False) -> StepRunner:
    """The runner of a step kind (importing its module on first use)."""
    module_name, function_name = (BLOCKING_RUNNERS if blocking else RUNNERS)[kind].split(":")
    runner: StepRunner = getattr(importlib.import_module(module_name), function_name)
    return runner


async def _resolve_secrets(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> None:
    for name in sorted(step.secrets - ctx.secrets.keys()):
        ctx.secrets[name] = await env.bridge.secret(name, step=step.name)


async def run_step(step: ParsedStep, ctx: TemplateContext, env: StepEnv, phase: Phase = "steps") -> StepMessage:
    """Run one step within its own timeout, if it has one; template and secret errors fail the step."""
    runner = runner_for(step.kind, blocking=env.blocking)
    # A blocking runner keeps the step's timeout itself; asyncio.timeout needs a running loop.
    deadline = None if env.blocking else asyncio.timeout(step.timeout_seconds)
    try:
        async with deadline or contextlib.nullcontext():
            await _resolve_secrets(step, ctx, env)
            result = await runner(step, ctx, env)
    except TimeoutError as exc:
        if deadline is None or not deadline.expired():
            result = StepMessage(name=step.name, status="failed", error=f"timed out: {exc or type(exc).__name__}")
        else:
            result = timed_out(step)
    except TemplateError as exc:
        result = StepMessage(name=step.name, status="failed", error=f"template: {exc}")
    except BridgeFailure as exc:
        result = StepMessage(name=step.name, status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in a step runner fails the step, not the child
        for line in traceback.format_exc().splitlines():
            env.emitter.log("stderr", step.name, line)
        result = StepMessage(
            name=step.name, status="failed", error=f"{step.kind} step crashed: {type(exc).__name__}: {exc}"
        )
    redactor = env.emitter.redactor
    output = storable_value(redactor.value(result.output))
    error = redactor.text(result.error) if result.error is not None else None
    if output is not None:
        size = len(to_json(output))
        limit = env.spec.max_result_bytes
        if env.output_bytes + size > limit:  # dropped, and the step fails (a failing step keeps its error)
            too_large = _too_large(size, env.output_bytes, limit)
            output, error = None, too_large if error is None else f"{error}; {too_large}"
            if result.status == "succeeded":
                result = result.model_copy(update={"status": "failed"})
        else:
            env.output_bytes += size
    return result.model_copy(update={"phase": phase, "output": output, "error": error})


def _too_large(size: int, used: int, limit: int) -> str:
    """The error of a step whose output does not fit in what the run may keep."""
    taken = f"; earlier steps took {used}" if used else ""
    return (
        f"output too large: {size} bytes as JSON, and the outputs of an execution are kept up to {limit} bytes"
        f" (AUTOMATION_EXECUTOR_MAX_RESULT_BYTES){taken}"
    )


def _label(result: StepMessage) -> str:
    """How an error names its step: ``step fetch``, ``check`` (the check is usually called so), ``check probe``."""
    if result.phase == "steps":
        return f"step {result.name}"
    return "check" if result.name == "check" else f"check {result.name}"


def _failed(
    result: StepMessage, outputs: dict[str, object], *, check_output: object = None, performed: bool | None = None
) -> ResultMessage:
    return ResultMessage(
        status=result.status,
        outputs=outputs,
        exit_code=result.exit_code,
        error=f"{_label(result)}: {result.error}",
        failed_step=result.name,
        check_output=check_output,
        performed=performed,
    )


async def _run_check(check: ParsedStep, ctx: TemplateContext, env: StepEnv) -> tuple[ResultMessage | None, object]:
    """Run the check: (a final result when the steps must not run, else None; the check's output)."""
    emitter = env.emitter
    emitter.log("system", check.name, f"check {check.name} ({check.kind}) started")
    result = await run_step(check, ctx, env, phase="check")
    emitter.send(result)
    if result.status != "succeeded":
        emitter.log("system", check.name, f"check {check.name} {result.status.replace('_', ' ')}: {result.error}")
        return _failed(result, {}, check_output=result.output, performed=False), result.output
    try:
        should_perform, payload = check_decision(result.output)
    except CheckError as exc:
        emitter.log("system", check.name, f"check {check.name} failed: {exc}")
        failed = result.model_copy(update={"status": "failed", "error": str(exc)})
        return _failed(failed, {}, check_output=result.output, performed=False), result.output
    if not should_perform:
        emitter.log("system", check.name, "check says there is nothing to do: the steps do not run")
        return ResultMessage(status="succeeded", outputs={}, check_output=result.output, performed=False), result.output
    emitter.log("system", check.name, "check says perform: the steps run")
    ctx.check_payload = payload
    return None, result.output


async def run_steps(
    spec: ChildSpec,
    emitter: Emitter,
    bridge: BridgeClient,
    *,
    blocking: bool = False,
    workdir: str | None = None,
    spawn: CommandSpawner | None = None,
    job: tuple[ParsedStep | None, list[ParsedStep]] | None = None,
    stopping: Callable[[], bool] | None = None,
) -> int:
    """Run the check (if any) and every step in order; the first step that does not succeed ends the run.

    ``blocking``: on the blocking path (the runners never wait for an event loop; see :func:`drive`).
    ``workdir`` (default: the current directory) and ``spawn`` (how commands start, default: as children
    of this process) are given when the executor runs a job of commands itself (:mod:`automation_executor.direct`),
    with ``job``: the check and steps it has already parsed from the spec (:func:`parse_job`), not parsed again,
    and ``stopping``: whether the run is being stopped, so that no further step starts (see :attr:`StepEnv.stopping`).
    """
    outputs: dict[str, object] = {}
    if job is None:
        try:
            job = parse_job(
                [step.model_dump() for step in spec.steps], spec.check.model_dump() if spec.check is not None else None
            )
        except StepConfigError as exc:
            emitter.send(ResultMessage(status="failed", outputs=outputs, error=f"invalid job definition: {exc}"))
            return 1
    check, steps = job
    ctx = TemplateContext(parameters=spec.parameters, event=spec.event)
    env = StepEnv(spec=spec, emitter=emitter, bridge=bridge, workdir=workdir or os.getcwd(), blocking=blocking)
    if spawn is not None:
        env.spawn = spawn
    if stopping is not None:
        env.stopping = stopping
    check_output: object = None
    performed: bool | None = None
    if check is not None:
        final, check_output = await _run_check(check, ctx, env)
        if final is not None:
            emitter.send(final)
            return 0 if final.status == "succeeded" else 1
        performed = True
    last_exit_code: int | None = None
    for step in steps:
        if env.stopping():  # the step before ended on the stop's SIGTERM (trapped, or exit 0): start nothing more
            emitter.log("system", step.name, f"step {step.name} not started: the run is being stopped")
            error = f"stopped before step {step.name}"
            stopped = ResultMessage(
                status="failed", outputs=outputs, error=error, check_output=check_output, performed=performed
            )
            emitter.send(stopped)
            return 1
        emitter.log("system", step.name, f"step {step.name} ({step.kind}) started")
        result = await run_step(step, ctx, env)
        emitter.send(result)
        if result.output is not None:
            outputs[step.name] = result.output
            ctx.steps[step.name] = result.output
        if step.kind in {"shell", "ssh.exec", "winrm.exec"}:
            last_exit_code = result.exit_code
        if result.status != "succeeded":
            ended = "stopped" if env.stopping() else result.status.replace("_", " ")
            emitter.log("system", step.name, f"step {step.name} {ended}: {result.error}")
            emitter.send(_failed(result, outputs, check_output=check_output, performed=performed))
            return 1
        emitter.log("system", step.name, f"step {step.name} succeeded")
    emitter.send(
        ResultMessage(
            status="succeeded",
            outputs=outputs,
            exit_code=last_exit_code,
            check_output=check_output,
            performed=performed,
        )
    )
    return 0


def prepare(line: bytes, emitter: Emitter) -> ChildSpec | int:
    """Parse the spec and apply its limits; the exit code instead when either fails (reported)."""
    try:
        spec = ChildSpec.model_validate_json(line)
    except (ValidationError, ValueError) as exc:
        emitter.send(ResultMessage(status="failed", outputs={}, error=f"executor child got an invalid spec: {exc}"))
        return 2
    emitter.max_line_bytes = spec.max_line_bytes
    try:
        applied = apply_limits(spec.limits)
    except (OSError, ValueError) as exc:
        emitter.send(ResultMessage(status="failed", outputs={}, error=f"cannot apply resource limits: {exc}"))
        return 2
    emitter.log("system", None, f"limits: {', '.join(applied)}")
    return spec


def runs_blocking(spec: ChildSpec) -> bool:
    """Whether the run takes the blocking path: every step and the check have a blocking runner."""
    return spec.fast_path and pidfds_work() and spec.step_types() <= BLOCKING_RUNNERS.keys()


def _terminate(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the command is being stopped
    raise Terminated


def run_without_loop(spec: ChildSpec, emitter: Emitter, replies: LineReader) -> int:
    """Run the check and the steps on the blocking path (``replies``: the rest of the child's stdin)."""
    signal.signal(signal.SIGTERM, _terminate)
    return drive(run_steps(spec, emitter, BlockingBridge(emitter, replies), blocking=True))


async def _serve(spec: ChildSpec, emitter: Emitter, replies_in: LineReader) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    replies = asyncio.StreamReader(limit=SPEC_LINE_LIMIT)
    replies.feed_data(replies_in.take_buffered())
    pipe = os.fdopen(replies_in.fd, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(replies), pipe)
    bridge = BridgeClient(emitter, replies)
    bridge.start()
    try:
        return await run_steps(spec, emitter, bridge)
    finally:
        await bridge.close()


def pidfds_work() -> bool:
    """Whether this kernel has ``pidfd_open`` (Linux 5.3 and later)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def use_pidfd_child_watcher() -> bool:
    """Have asyncio learn of command exits through a pidfd instead of a waiting thread per command.

    Python 3.11's default (``ThreadedChildWatcher``) starts a thread for every command a step runs;
    3.12 uses pidfds itself. Kept as is when the kernel has no ``pidfd_open`` (Linux < 5.3).
    """
    if sys.version_info >= (3, 12) or not pidfds_work():
        return False
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return True


WARM_UP_HANDLER = "automation_executor.child.warmup:noop"
"""The handler of the no-op job :func:`prepare_fork` runs (declared in its module's manifest)."""


def prepare_fork() -> int | None:
    """In the fork server, once before it serves: run a no-op ``python`` job through this module's own
    code (its spec parsed from JSON, the blocking path, the handler's thread, the protocol's messages
    written to ``/dev/null``; no resource limits, nothing else written). Returns the run's exit code
    (0: it succeeded), or None when it could not run.

    Python, pydantic and the standard library set much up lazily, on first use: validators and
    serializers, the first thread, logging's handlers. Done here, every child finds it done, in pages
    it shares with the server, instead of doing it again and copying every page it writes on the way:
    ~130 fewer page faults per python run, ~11 % of a child's (docs/benchmarks.md). Whatever goes wrong
    here only costs children that saving.
    """
    step = {"name": "warm-up", "type": "python", "config": {"handler": WARM_UP_HANDLER}}
    line = json.dumps({"execution_id": "warm-up", "attempt": 1, "steps": [step], "parameters": {}}).encode()
    terminate = signal.getsignal(signal.SIGTERM)
    replies_r, replies_w = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    code: int | None = None
    try:
        spec = ChildSpec.model_validate_json(line)
        if runs_blocking(spec):
            code = run_without_loop(spec, Emitter(null), LineReader(replies_r, limit=SPEC_LINE_LIMIT))
    except Exception as exc:  # noqa: BLE001 - a warm-up that fails costs only its saving
        print(f"forkserver: the warm-up run failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, terminate)
        for fd in (replies_r, replies_w, null):
            os.close(fd)
    if code not in (0, None):
        print(f"forkserver: the warm-up run ended with {code}", file=sys.stderr, flush=True)
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(5)  # the handler's thread ends with its call: no thread may outlive the warm-up
    gc.collect()
    return code


def main() -> int:
    """Run one execution; the exit code is 0 on success, 1 on a failed step, 143 when terminated."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed by accident goes to stderr, never into the protocol
    bridge_fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # commands and handlers read nothing of the executor's replies
    os.close(null)
    emitter = Emitter(protocol_fd)
    replies = LineReader(bridge_fd, limit=SPEC_LINE_LIMIT)
    try:
        line = replies.readline()
    except (OSError, ValueError) as exc:
        emitter.send(ResultMessage(status="failed", outputs={}, error=f"executor child cannot read its spec: {exc}"))
        return 2
    spec = prepare(line, emitter)
    if isinstance(spec, int):
        return spec
    try:
        if runs_blocking(spec):
            return run_without_loop(spec, emitter, replies)
        use_pidfd_child_watcher()
        return asyncio.run(_serve(spec, emitter, replies))
    except (asyncio.CancelledError, KeyboardInterrupt, Terminated):
        return EXIT_TERMINATED
