"""The child's main loop: read the spec, apply limits, run the check and the steps, report the result.

File descriptors: the protocol goes out on a copy of the original stdout (fd 1 then points at stderr, so
a stray ``print`` never corrupts it); the executor's replies come in on a copy of the original stdin
(fd 0 then reads ``/dev/null``, so no command or handler can swallow a reply).

Before a step runs, every secret it names (``${{ secrets.X }}`` and ``*_secret`` fields) is asked of the
executor; an unknown one fails the step, naming it. A job's check step runs first: when it says
``should_perform: false`` the run succeeds without running the steps.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from automation_executor.child.bridge import BridgeClient, BridgeFailure
from automation_executor.child.emitter import Emitter
from automation_executor.child.env import StepEnv
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


def runner_for(kind: str) -> StepRunner:
    """The runner of a step kind (importing its module on first use)."""
    module_name, function_name = RUNNERS[kind].split(":")
    runner: StepRunner = getattr(importlib.import_module(module_name), function_name)
    return runner


async def _resolve_secrets(step: ParsedStep, ctx: TemplateContext, env: StepEnv) -> None:
    for name in sorted(step.secrets - ctx.secrets.keys()):
        ctx.secrets[name] = await env.bridge.secret(name, step=step.name)


async def run_step(step: ParsedStep, ctx: TemplateContext, env: StepEnv, phase: Phase = "steps") -> StepMessage:
    """Run one step within its own timeout, if it has one; template and secret errors fail the step."""
    runner = runner_for(step.kind)
    deadline = asyncio.timeout(step.timeout_seconds)
    try:
        async with deadline:
            await _resolve_secrets(step, ctx, env)
            result = await runner(step, ctx, env)
    except TimeoutError as exc:
        if not deadline.expired():
            result = StepMessage(name=step.name, status="failed", error=f"timed out: {exc or type(exc).__name__}")
        else:
            result = StepMessage(name=step.name, status="timed_out", error=f"timed out after {step.timeout_seconds}s")
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
    return result.model_copy(
        update={
            "phase": phase,
            "output": redactor.value(result.output),
            "error": redactor.text(result.error) if result.error is not None else None,
        }
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


async def run_steps(spec: ChildSpec, emitter: Emitter, bridge: BridgeClient) -> int:
    """Run the check (if any) and every step in order; the first step that does not succeed ends the run."""
    outputs: dict[str, object] = {}
    try:
        check, steps = parse_job(
            [step.model_dump() for step in spec.steps], spec.check.model_dump() if spec.check is not None else None
        )
    except StepConfigError as exc:
        emitter.send(ResultMessage(status="failed", outputs=outputs, error=f"invalid job definition: {exc}"))
        return 1
    ctx = TemplateContext(parameters=spec.parameters, event=spec.event)
    env = StepEnv(spec=spec, emitter=emitter, bridge=bridge, workdir=os.getcwd())
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
        emitter.log("system", step.name, f"step {step.name} ({step.kind}) started")
        result = await run_step(step, ctx, env)
        emitter.send(result)
        if result.output is not None:
            outputs[step.name] = result.output
            ctx.steps[step.name] = result.output
        if step.kind in {"shell", "ssh.exec", "winrm.exec"}:
            last_exit_code = result.exit_code
        if result.status != "succeeded":
            emitter.log("system", step.name, f"step {step.name} {result.status.replace('_', ' ')}: {result.error}")
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


async def _serve(emitter: Emitter, bridge_fd: int) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    replies = asyncio.StreamReader(limit=SPEC_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(replies), os.fdopen(bridge_fd, "rb", buffering=0))
    try:
        spec = ChildSpec.model_validate_json(await replies.readline())
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
    bridge = BridgeClient(emitter, replies)
    bridge.start()
    try:
        return await run_steps(spec, emitter, bridge)
    finally:
        await bridge.close()


def use_pidfd_child_watcher() -> bool:
    """Have asyncio learn of command exits through a pidfd instead of a waiting thread per command.

    Python 3.11's default (``ThreadedChildWatcher``) starts a thread for every command a step runs;
    3.12 uses pidfds itself. Kept as is when the kernel has no ``pidfd_open`` (Linux < 5.3).
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return True


def main() -> int:
    """Run one execution; the exit code is 0 on success, 1 on a failed step, 143 when terminated."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed by accident goes to stderr, never into the protocol
    bridge_fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # commands and handlers read nothing of the executor's replies
    os.close(null)
    emitter = Emitter(protocol_fd)
    use_pidfd_child_watcher()
    try:
        return asyncio.run(_serve(emitter, bridge_fd))
    except (asyncio.CancelledError, KeyboardInterrupt):
        return EXIT_TERMINATED
