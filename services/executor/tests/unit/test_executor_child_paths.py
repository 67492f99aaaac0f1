"""Which jobs take the child's blocking path or run without a child, and how a coroutine is driven
without an event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from automation_executor.child.blocking import drive
from automation_executor.child.main import runs_blocking
from automation_executor.direct import DIRECT_HTTP_MAX_BODY_BYTES, runs_direct
from automation_executor.domain.protocol import ChildSpec


def _spec(*kinds: str, check: str | None = None, fast: bool = True) -> ChildSpec:
    def step(name: str, kind: str) -> dict[str, Any]:
        return {"name": name, "type": kind, "config": {}}

    return ChildSpec.model_validate(
        {
            "execution_id": "e",
            "attempt": 1,
            "steps": [step(f"s{i}", kind) for i, kind in enumerate(kinds)],
            "check": step("check", check) if check is not None else None,
            "parameters": {},
            "fast_path": fast,
        }
    )


@pytest.mark.parametrize(
    ("spec", "blocking"),
    [
        (_spec("shell"), True),
        (_spec("shell", "shell", check="shell"), True),
        (_spec("shell", "python", check="python"), True),
        (_spec("shell", "http"), False),
        (_spec("python", check="http"), False),
        (_spec("event.emit"), False),
        (_spec("ssh.exec"), False),
        (_spec("shell", fast=False), False),
    ],
    ids=["shell", "shell-with-shell-check", "with-python", "with-http", "http-check", "event", "ssh", "turned-off"],
)
def test_only_jobs_of_shell_and_python_steps_run_blocking(spec: ChildSpec, blocking: bool) -> None:
    assert runs_blocking(spec) is blocking


@pytest.mark.parametrize(
    ("spec", "direct"),
    [
        (_spec("shell", "shell", check="shell"), True),
        (_spec("shell", "event.emit", "browser"), True),
        (_spec("browser", check="shell", fast=False), True),
        (_spec("shell", "http", check="http"), True),
        (_spec("shell", "python"), False),
        (_spec("ssh.exec"), False),
        (_spec("winrm.exec"), False),
    ],
    ids=["shell-with-shell-check", "event-and-browser", "browser", "http", "with-python", "ssh", "winrm"],
)
def test_only_jobs_that_run_no_code_in_a_child_run_without_one(spec: ChildSpec, direct: bool) -> None:
    assert runs_direct(spec) is direct


def test_an_http_step_that_keeps_a_large_body_runs_in_a_child() -> None:
    spec = _spec("shell", "http")
    assert runs_direct(spec), "the default cap (64 KiB) is small enough"
    spec.steps[1].config["max_body_bytes"] = DIRECT_HTTP_MAX_BODY_BYTES
    assert runs_direct(spec)
    spec.steps[1].config["max_body_bytes"] = DIRECT_HTTP_MAX_BODY_BYTES + 1
    assert not runs_direct(spec), "the body would live in the executor's memory, outside the job's limits"
    by_setting = _spec("http").model_copy(update={"http_max_body_bytes": 64 * 1024 * 1024})
    assert not runs_direct(by_setting)
    by_setting.steps[0].config["max_body_bytes"] = 1000
    assert runs_direct(by_setting), "the step's own cap is the one that counts"


def test_drive_runs_a_coroutine_that_never_waits_for_a_loop() -> None:
    async def inner() -> int:
        return 2

    async def outer() -> int:
        return await inner() * 21

    assert drive(outer()) == 42


def test_drive_refuses_a_coroutine_that_waits_for_a_loop() -> None:
    async def waits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="waited for an event loop"):
        drive(waits())
