"""The child's main loop: read the spec, apply limits, run the steps in order, report the result."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from automation_executor.child.emitter import Emitter
from automation_executor.child.http import run_http
from automation_executor.child.limits import apply_limits
from automation_executor.child.shell import run_shell
from automation_executor.domain.protocol import ChildSpec, ResultMessage, StepMessage
from automation_executor.domain.steps import ParsedStep, StepConfigError, parse_steps
from automation_executor.domain.templates import TemplateContext, TemplateError

EXIT_TERMINATED = 128 + signal.SIGTERM
StepRunner = Callable[[ParsedStep, TemplateContext, Emitter, ChildSpec], Awaitable[StepMessage]]
RUNNERS: dict[str, StepRunner] = {"shell": run_shell, "http": run_http}


async def run_step(step: ParsedStep, ctx: TemplateContext, emitter: Emitter, spec: ChildSpec) -> StepMessage:
    """Run one step within its own timeout, if it has one; template errors fail the step."""
    runner = RUNNERS[step.kind]
    try:
        if step.timeout_seconds is None:
            return await runner(step, ctx, emitter, spec)
        async with asyncio.timeout(step.timeout_seconds):
            return await runner(step, ctx, emitter, spec)
    except TimeoutError:
        return StepMessage(name=step.name, status="timed_out", error=f"timed out after {step.timeout_seconds}s")
    except TemplateError as exc:
        return StepMessage(name=step.name, status="failed", error=f"template: {exc}")


async def run_steps(spec: ChildSpec, emitter: Emitter) -> int:
    """Run every step in order; the first that does not succeed ends the run."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    outputs: dict[str, object] = {}
    try:
        steps = parse_steps([step.model_dump() for step in spec.steps])
    except StepConfigError as exc:
        emitter.send(ResultMessage(status="failed", outputs=outputs, error=f"invalid job definition: {exc}"))
        return 1
    ctx = TemplateContext(parameters=spec.parameters, event=spec.event)
    last_exit_code: int | None = None
    for step in steps:
        emitter.log("system", step.name, f"step {step.name} ({step.kind}) started")
        result = await run_step(step, ctx, emitter, spec)
        emitter.send(result)
        if result.output is not None:
            outputs[step.name] = result.output
            ctx.steps[step.name] = result.output
        if step.kind == "shell":
            last_exit_code = result.exit_code
        if result.status != "succeeded":
            emitter.log("system", step.name, f"step {step.name} {result.status.replace('_', ' ')}: {result.error}")
            emitter.send(
                ResultMessage(
                    status=result.status,
                    outputs=outputs,
                    exit_code=result.exit_code,
                    error=f"step {step.name}: {result.error}",
                    failed_step=step.name,
                )
            )
            return 1
        emitter.log("system", step.name, f"step {step.name} succeeded")
    emitter.send(ResultMessage(status="succeeded", outputs=outputs, exit_code=last_exit_code))
    return 0


def main() -> int:
    """Run one execution; the exit code is 0 on success, 1 on a failed step, 143 when terminated."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed by accident goes to stderr, never into the protocol
    emitter = Emitter(protocol_fd)
    try:
        spec = ChildSpec.model_validate_json(sys.stdin.buffer.read())
    except ValidationError as exc:
        emitter.send(ResultMessage(status="failed", outputs={}, error=f"executor child got an invalid spec: {exc}"))
        return 2
    emitter.max_line_bytes = spec.max_line_bytes
    try:
        applied = apply_limits(spec.limits)
    except (OSError, ValueError) as exc:
        emitter.send(ResultMessage(status="failed", outputs={}, error=f"cannot apply resource limits: {exc}"))
        return 2
    emitter.log("system", None, f"limits: {', '.join(applied)}")
    try:
        return asyncio.run(run_steps(spec, emitter))
    except (asyncio.CancelledError, KeyboardInterrupt):
        return EXIT_TERMINATED
