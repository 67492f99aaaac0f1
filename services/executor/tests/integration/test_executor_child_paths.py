"""The child's two ways of running a job of shell steps report the same (real processes and fork server).

A job whose steps and check are all shell steps runs without an event loop (the blocking path); with
``AUTOMATION_EXECUTOR_SHELL_FAST_PATH=false``, or with any other kind of step, it runs on asyncio.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest

from automation_executor.domain.outcome import RunOutcome

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_steps_support import forked_children, run_job

pytestmark = pytest.mark.integration

JOBS: dict[str, dict[str, Any]] = {
    "check, templates, secrets and a failing step": {
        "check": {
            "type": "shell",
            "config": {"command": ["echo", '{"should_perform": true, "perform_payload": {"n": 3}}']},
        },
        "steps": [
            {
                "name": "env",
                "type": "shell",
                "config": {
                    "command": ["sh", "-c", 'echo "v=$V token=$T"; echo "to stderr $T" >&2'],
                    "env": {"V": "${{ parameters.v }}", "T": "${{ secrets.API_TOKEN }}"},
                },
            },
            {"name": "payload", "type": "shell", "config": {"command": ["echo", "${{ check.payload.n }}"]}},
            {
                "name": "bad",
                "type": "shell",
                "config": {"command": ["sh", "-c", "exit 4"], "expected_exit_codes": [0, 1]},
            },
            {"name": "never", "type": "shell", "config": {"command": ["echo", "never"]}},
        ],
    },
    "a step timeout and a background process": {
        "steps": [
            {"name": "bg", "type": "shell", "config": {"command": ["sh", "-c", "sleep 30 & echo started"]}},
            {"name": "slow", "type": "shell", "config": {"command": ["sleep", "30"]}, "timeout_seconds": 1},
        ],
    },
    "a job timeout, SIGTERM to a command that answers it": {
        "timeout_seconds": 1,
        "steps": [
            {
                "name": "trap",
                "type": "shell",
                "config": {"command": ["sh", "-c", 'trap "echo got TERM; exit 0" TERM; echo ready; sleep 30 & wait']},
            }
        ],
    },
    "a missing command": {
        "steps": [{"name": "missing", "type": "shell", "config": {"command": ["no-such-command-here"]}}],
    },
    "an unknown secret": {
        "steps": [{"name": "secret", "type": "shell", "config": {"command": ["echo", "${{ secrets.NOPE }}"]}}],
    },
}


async def _both(tmp_path: Path, job: dict[str, Any], *, forked: bool) -> list[tuple[RunOutcome, list[Any]]]:
    results = []
    for fast in (True, False):
        async with forked_children() if forked else contextlib.nullcontext():
            outcome, sink = await run_job(
                tmp_path,
                job["steps"],
                check=job.get("check"),
                parameters={"v": "a b"},
                secrets={"API_TOKEN": "tok-0123456789"},
                timeout_seconds=job.get("timeout_seconds", 30),
                settings={"executor_shell_fast_path": fast},
            )
        results.append((outcome, sink.lines))
    return results


@pytest.mark.parametrize("forked", [False, True], ids=["spawned", "forked"])
@pytest.mark.parametrize("name", list(JOBS))
async def test_the_blocking_path_and_the_asyncio_path_report_the_same(tmp_path: Path, name: str, forked: bool) -> None:
    (fast, fast_lines), (loop, loop_lines) = await _both(tmp_path, JOBS[name], forked=forked)
    assert fast == loop
    assert fast_lines == loop_lines
    assert "tok-0123456789" not in repr(fast) + repr(fast_lines)


async def test_what_the_blocking_path_reports(tmp_path: Path) -> None:
    """The outcomes compared above are the expected ones, not merely equal."""
    (first, lines), _ = await _both(tmp_path, JOBS["check, templates, secrets and a failing step"], forked=False)
    assert first.status == "failed"
    assert first.exit_code == 4
    assert first.error is not None
    assert "step bad" in first.error
    assert first.outputs["performed"] is True
    assert first.outputs["steps"]["env"]["stdout_tail"] == "v=a b token=***\n"
    assert first.outputs["steps"]["payload"]["stdout_tail"] == "3\n"
    assert "never" not in first.outputs["steps"]
    assert ("stderr", "env", "to stderr ***") in lines
    (timed, timed_lines), _ = await _both(tmp_path, JOBS["a step timeout and a background process"], forked=False)
    assert timed.status == "timed_out"
    assert timed.outputs["bg"]["stdout_tail"] == "started\n"
    assert any("output still open after the command exited" in text for _, _, text in timed_lines)
    assert timed.error is not None
    assert "step slow: timed out after 1s" in timed.error
    (stopped, stopped_lines), _ = await _both(
        tmp_path, JOBS["a job timeout, SIGTERM to a command that answers it"], forked=False
    )
    assert stopped.status == "timed_out"
    assert [text for _, step, text in stopped_lines if step == "trap"][-3:] == [
        "step trap (shell) started",
        "ready",
        "got TERM",
    ]
    (missing, _), _ = await _both(tmp_path, JOBS["a missing command"], forked=False)
    assert missing.status == "failed"
    assert missing.exit_code == 127
    assert missing.error == "step missing: not found: no-such-command-here"
    (unknown, _), _ = await _both(tmp_path, JOBS["an unknown secret"], forked=False)
    assert unknown.status == "failed"
    assert unknown.error is not None
    assert "secret 'NOPE': not found" in unknown.error
