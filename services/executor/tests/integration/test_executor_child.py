"""The child process through the runner: limits, isolation, output handling (real processes, no broker or database).

Every test runs twice: with the shell fast path (a job of shell steps runs in its child without an
event loop) and without it (on the child's asyncio loop); ``test_executor_child_paths`` holds the two
to the same result.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from automation_contracts import LogStream, RunRequested
from automation_executor.domain.outcome import RunOutcome
from automation_executor.runner import ChildRunner
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import run_request_data

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, params=[True, False], ids=["blocking", "asyncio"])
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setenv("AUTOMATION_EXECUTOR_CHILD_FAST_PATH", str(request.param).lower())
    return bool(request.param)


class ListSink:
    """Collects log lines as the runner reports them."""

    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str | None, str]] = []

    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> None:
        self.lines.append((stream, step, text))

    def text(self, stream: LogStream | None = None) -> str:
        return "\n".join(t for s, _, t in self.lines if stream is None or s == stream)


def _settings(tmp_path: Path, **overrides: Any) -> ExecutorSettings:
    return ExecutorSettings(env="development", executor_workdir_root=str(tmp_path), **overrides)


async def _run(
    tmp_path: Path, steps: list[dict[str, Any]], *, settings: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[RunOutcome, ListSink]:
    data = run_request_data(steps, **kwargs)
    request = RunRequested.model_validate(json.loads(json.dumps(data)))
    sink = ListSink()
    outcome = await ChildRunner(_settings(tmp_path, **(settings or {}))).run(request, sink)
    return outcome, sink


def _shell(name: str, *argv: str, **config: Any) -> dict[str, Any]:
    return {"name": name, "type": "shell", "config": {"command": list(argv), **config}}


async def test_limits_apply_to_commands(tmp_path: Path) -> None:
    outcome, _ = await _run(
        tmp_path,
        [
            _shell("nofile", "sh", "-c", "ulimit -n"),
            _shell("core", "sh", "-c", "ulimit -c"),
            _shell("fsize", "sh", "-c", "head -c 4096 /dev/zero > big", expected_exit_codes=[0, 1, 153]),
            _shell("size", "sh", "-c", "wc -c < big"),
        ],
        settings={"executor_max_open_files": 64, "executor_max_file_size_bytes": 2048},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["nofile"]["stdout_tail"] == "64\n"
    assert outcome.outputs["core"]["stdout_tail"] == "0\n"
    assert outcome.outputs["fsize"]["exit_code"] != 0
    assert outcome.outputs["size"]["stdout_tail"].strip() == "2048"


async def test_environment_and_workdir_are_the_executions_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMATION_TEST_SECRET", "do-not-leak")
    outcome, _ = await _run(
        tmp_path,
        [
            _shell("env", "sh", "-c", "env | sort", env={"EXTRA": "${{ parameters.extra }}"}),
            _shell("pwd", "pwd"),
            _shell("write", "sh", "-c", "mkdir -p sub && touch sub/file && chmod 500 sub"),
        ],
        parameters={"extra": "x y"},
    )
    assert outcome.status == "succeeded", outcome
    env = outcome.outputs["env"]["stdout_tail"]
    assert "do-not-leak" not in env
    assert "EXTRA=x y" in env
    workdir = outcome.outputs["pwd"]["stdout_tail"].strip()
    assert Path(workdir).parent == tmp_path
    assert f"HOME={workdir}" in env
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert leftovers == [], "the working directory must be removed afterwards"


async def test_an_untouched_working_directory_is_removed_too(tmp_path: Path) -> None:
    outcome, _ = await _run(tmp_path, [_shell("noop", "true")])
    assert outcome.status == "succeeded", outcome
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


async def test_failing_step_stops_the_run_with_its_exit_code(tmp_path: Path) -> None:
    outcome, sink = await _run(
        tmp_path,
        [
            _shell("ok", "echo", "first"),
            _shell("bad", "sh", "-c", "echo broken >&2; exit 7"),
            _shell("never", "echo", "never"),
        ],
    )
    assert outcome.status == "failed"
    assert outcome.exit_code == 7
    assert outcome.error is not None
    assert "step bad" in outcome.error
    assert "exit code 7" in outcome.error
    assert set(outcome.outputs) == {"ok", "bad"}
    assert ("stderr", "bad", "broken") in sink.lines
    assert "never" not in sink.text("stdout")


async def test_missing_command_and_template_errors_fail_the_step(tmp_path: Path) -> None:
    missing, _ = await _run(tmp_path, [_shell("x", "no-such-command-here")])
    assert missing.status == "failed"
    assert missing.exit_code == 127
    unknown, _ = await _run(tmp_path, [_shell("x", "echo", "${{ parameters.nope }}")])
    assert unknown.status == "failed"
    assert unknown.error is not None
    assert "parameters.nope" in unknown.error


async def test_a_cwd_takes_templates_and_a_missing_one_is_named(tmp_path: Path) -> None:
    outcome, _ = await _run(
        tmp_path,
        [_shell("mk", "mkdir", "-p", "a dir/x"), _shell("pwd", "pwd", cwd="${{ parameters.d }}/x")],
        parameters={"d": "a dir"},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["pwd"]["stdout_tail"].endswith("/a dir/x\n")
    missing, _ = await _run(tmp_path, [_shell("pwd", "pwd", cwd="${{ parameters.d }}")], parameters={"d": "nope"})
    assert (missing.status, missing.exit_code) == ("failed", None)
    assert missing.error == "step pwd: working directory not found: nope"
    outside, _ = await _run(tmp_path, [_shell("pwd", "pwd", cwd="${{ parameters.d }}")], parameters={"d": "../.."})
    assert outside.status == "failed"
    assert outside.error == "step pwd: working directory '../..' is not inside the execution's working directory"


async def test_long_lines_are_cut_and_background_processes_do_not_hold_a_step(tmp_path: Path) -> None:
    outcome, sink = await _run(
        tmp_path,
        [
            _shell("long", "sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a; echo; echo next"),
            _shell("bg", "sh", "-c", "sleep 30 & echo started"),
        ],
        settings={"executor_max_line_bytes": 100},
        timeout_seconds=20,
    )
    assert outcome.status == "succeeded", outcome
    stdout = [t for s, step, t in sink.lines if s == "stdout" and step == "long"]
    assert stdout[0].endswith("[line truncated]")
    assert len(stdout[0].encode()) <= 100
    assert stdout[1] == "next"
    assert outcome.outputs["bg"]["stdout_tail"] == "started\n"


async def test_step_timeout_and_job_timeout(tmp_path: Path) -> None:
    step, _ = await _run(
        tmp_path, [{"name": "slow", "type": "shell", "config": {"command": ["sleep", "30"]}, "timeout_seconds": 1}]
    )
    assert step.status == "timed_out"
    assert step.error is not None
    assert "step slow" in step.error
    job, sink = await _run(
        tmp_path, [_shell("slow", "sleep", "30")], timeout_seconds=1, settings={"executor_kill_grace_seconds": 1}
    )
    assert job.status == "timed_out"
    assert job.error == "timed out after 1s"
    assert "SIGTERM" in sink.text("system")


SLOW_CLEANUP = [
    "sh",
    "-c",
    "trap 'trap : TERM; echo cleanup started; sleep 2.5; echo cleanup done; exit 0' TERM; echo ready; sleep 60 & wait",
]
"""A command whose SIGTERM handler needs 2.5 s: more than 2 s, less than the grace period of the tests below.
It ignores a second SIGTERM while it cleans up (on a job timeout the executor signals the child's process
group, and the child then stops the command too), as a handler that takes time should."""


@pytest.mark.parametrize("timeout", ["job", "step"])
async def test_a_timeout_gives_the_command_the_whole_grace_period(tmp_path: Path, timeout: str) -> None:
    step = _shell("slow", *SLOW_CLEANUP)
    if timeout == "step":
        step["timeout_seconds"] = 1
    outcome, sink = await _run(
        tmp_path,
        [step],
        timeout_seconds=1 if timeout == "job" else 30,
        settings={"executor_kill_grace_seconds": 4},
    )
    assert outcome.status == "timed_out", outcome
    stdout = [t for s, step_name, t in sink.lines if s == "stdout" and step_name == "slow"]
    assert stdout == ["ready", "cleanup started", "cleanup done"], sink.lines
    if timeout == "job":
        assert "timed out after 1s: stopping (SIGTERM, SIGKILL after 4s)" in sink.text("system")


async def test_shell_string_quotes_values_and_refuses_unsafe_places(tmp_path: Path) -> None:
    target = tmp_path / f"pwned-{uuid.uuid4().hex}"
    value = f"x'; touch {target}; echo '"
    quoted, _ = await _run(
        tmp_path,
        [{"name": "q", "type": "shell", "config": {"command": "printf '%s\\n' ${{ parameters.v }}", "shell": True}}],
        parameters={"v": value},
    )
    assert quoted.status == "succeeded", quoted
    assert quoted.outputs["q"]["stdout_tail"] == f"{value}\n"
    refused, _ = await _run(
        tmp_path,
        [{"name": "q", "type": "shell", "config": {"command": 'echo "${{ parameters.v }}"', "shell": True}}],
        parameters={"v": value},
        retries=3,
    )
    assert refused.status == "failed"
    assert refused.permanent
    assert refused.error is not None
    assert "inside double quotes" in refused.error
    assert not target.exists()
