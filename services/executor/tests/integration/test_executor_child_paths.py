"""The child's two ways of running a job report the same (real processes and fork server).

A job whose steps and check are all shell and python steps runs without an event loop (the blocking
path); with ``AUTOMATION_EXECUTOR_CHILD_FAST_PATH=false``, or with any other kind of step, it runs on
asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from automation_executor.bridge import RecordingServices
from automation_executor.child.blocking import LineReader
from automation_executor.child.emitter import Emitter
from automation_executor.child.main import SPEC_LINE_LIMIT, prepare, run_without_loop, runs_blocking
from automation_executor.domain.outcome import RunOutcome
from automation_executor.domain.protocol import ChildSpec

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_steps_support import forked_children, run_job

pytestmark = pytest.mark.integration

EXAMPLES = "automation_executor.examples.handlers"


def _python(name: str, handler: str, /, **args: Any) -> dict[str, Any]:
    return {"name": name, "type": "python", "config": {"handler": f"{EXAMPLES}:{handler}", "args": args}}


JOBS: dict[str, dict[str, Any]] = {
    "python handlers: plain and async, a secret, print, logging and an event": {
        "check": {"type": "python", "config": {"handler": f"{EXAMPLES}:inventory_check", "args": {"pending": 2}}},
        "steps": [
            _python("greet", "greet", name="${{ parameters.v }}"),
            _python("echo", "echo_args", pending="${{ check.payload.pending }}"),
            _python("secret", "use_secret", token_secret="API_TOKEN"),
            _python("emit", "emit_event", type="inventory.checked", data={"by": "handler"}),
            {"name": "shell", "type": "shell", "config": {"command": ["echo", "${{ steps.greet.output.greeting }}"]}},
        ],
    },
    "a failing handler": {"steps": [_python("fail", "fail", message="it broke"), _python("never", "noop")]},
    "a job timeout while a handler sleeps": {  # the child must end on SIGTERM: SIGKILL would come after 30 s
        "timeout_seconds": 1,
        "settings": {"executor_kill_grace_seconds": 30},
        "steps": [_python("nap", "sleep", seconds=30)],
    },
    "a hanging handler and its step timeout": {
        "steps": [{**_python("slow", "sleep", seconds=30), "timeout_seconds": 1}]
    },
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
                # The group's SIGTERM and the child's own reach the command: it answers the first only.
                "config": {
                    "command": [
                        "sh",
                        "-c",
                        "trap \"trap '' TERM; echo got TERM; exit 0\" TERM; echo ready; sleep 30 & wait",
                    ]
                },
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
    emitted = []
    for fast in (True, False):
        services = RecordingServices()
        async with forked_children() if forked else contextlib.nullcontext(), asyncio.timeout(20):
            outcome, sink = await run_job(
                tmp_path,
                job["steps"],
                check=job.get("check"),
                parameters={"v": "a b"},
                secrets={"API_TOKEN": "tok-0123456789"},
                timeout_seconds=job.get("timeout_seconds", 30),
                settings={"executor_child_fast_path": fast, **job.get("settings", {})},
                services=services,
            )
        results.append((outcome, sink.lines))
        emitted.append([(event.type, event.subject, event.data) for event in services.events])
    assert emitted[0] == emitted[1]
    return results


@pytest.mark.parametrize("forked", [False, True], ids=["spawned", "forked"])
@pytest.mark.parametrize("name", list(JOBS))
async def test_the_blocking_path_and_the_asyncio_path_report_the_same(tmp_path: Path, name: str, forked: bool) -> None:
    (fast, fast_lines), (loop, loop_lines) = await _both(tmp_path, JOBS[name], forked=forked)
    for outcome in (fast, loop):  # an emitted event's id derives from the execution's, which differs
        if "emit" in (steps := outcome.outputs.get("steps", {})):
            steps["emit"]["id"] = "<event id>"
    assert fast == loop
    assert fast_lines == loop_lines
    assert "tok-0123456789" not in repr(fast) + repr(fast_lines)
    EXPECTED[name](fast, fast_lines)  # and equal to what it should be, not merely equal


Lines = list[tuple[str, str | None, str]]


def _check_templates_secrets(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "failed"
    assert outcome.exit_code == 4
    assert outcome.error is not None
    assert "step bad" in outcome.error
    assert outcome.outputs["performed"] is True
    assert outcome.outputs["steps"]["env"]["stdout_tail"] == "v=a b token=***\n"
    assert outcome.outputs["steps"]["payload"]["stdout_tail"] == "3\n"
    assert "never" not in outcome.outputs["steps"]
    assert ("stderr", "env", "to stderr ***") in lines


def _step_timeout(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "timed_out"
    assert outcome.outputs["bg"]["stdout_tail"] == "started\n"
    assert any("output still open after the command exited" in text for _, _, text in lines)
    assert outcome.error == "step slow: timed out after 1s"


def _job_timeout(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "timed_out"
    assert [text for _, step, text in lines if step == "trap"][-3:] == [
        "step trap (shell) started",
        "ready",
        "got TERM",
    ]


def _handlers(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "succeeded", outcome
    steps = outcome.outputs["steps"]
    assert steps["greet"] == {"greeting": "hello a b"}
    assert steps["echo"]["args"] == {"pending": 2}
    assert steps["secret"] == {"token": "***", "length": 14}
    assert set(steps["emit"]) == {"id"}
    assert steps["shell"]["stdout_tail"] == "hello a b\n"
    assert ("stdout", "greet", "hello from greet") in lines
    assert ("stdout", "secret", "INFO the token is ***") in lines


def _failing_handler(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.error == f"step fail: {EXAMPLES}:fail raised RuntimeError: it broke"
    assert any("Traceback" in text for _, step, text in lines if step == "fail")
    assert not any("python_step.py" in text for _, _, text in lines), "no frame of the runner's own"


def _hanging_handler(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "timed_out"
    assert outcome.error == "step slow: timed out after 1s"


def _job_timeout_in_handler(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "timed_out"
    assert outcome.error == "timed out after 1s"
    assert ("system", None, "timed out after 1s: stopping (SIGTERM, SIGKILL after 30s)") in lines


def _missing_command(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "failed"
    assert outcome.exit_code == 127
    assert outcome.error == "step missing: not found: no-such-command-here"


def _unknown_secret(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "secret 'NOPE': not found" in outcome.error


EXPECTED: dict[str, Callable[[RunOutcome, Lines], None]] = {
    "python handlers: plain and async, a secret, print, logging and an event": _handlers,
    "a failing handler": _failing_handler,
    "a hanging handler and its step timeout": _hanging_handler,
    "a job timeout while a handler sleeps": _job_timeout_in_handler,
    "check, templates, secrets and a failing step": _check_templates_secrets,
    "a step timeout and a background process": _step_timeout,
    "a job timeout, SIGTERM to a command that answers it": _job_timeout,
    "a missing command": _missing_command,
    "an unknown secret": _unknown_secret,
}


@pytest.mark.parametrize(
    "step",
    [
        {"name": "s", "type": "shell", "config": {"command": ["echo", "${{ secrets.X }}"]}},
        {"name": "p", "type": "python", "config": {"handler": f"{EXAMPLES}:use_secret", "args": {"token_secret": "X"}}},
    ],
    ids=["shell", "python"],
)
def test_the_blocking_path_makes_no_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: Any) -> None:
    """Its saving is the event loop it does not make: nothing on it may make one behind its back."""
    monkeypatch.chdir(tmp_path)
    spec = {"execution_id": "e", "attempt": 1, "steps": [step], "parameters": {}, "path": os.environ["PATH"]}
    spec_r, spec_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(spec_w, json.dumps(spec).encode() + b"\n")
    protocol: list[dict[str, Any]] = []

    def executor() -> None:  # answers every secret request, as the executor's bridge does
        with os.fdopen(out_r, "rb") as lines:
            for line in lines:
                protocol.append(message := json.loads(line))
                if message["type"] == "request":
                    reply = {"type": "reply", "id": message["id"], "ok": True, "result": "sekret"}
                    os.write(spec_w, json.dumps(reply).encode() + b"\n")

    answering = threading.Thread(target=executor)
    answering.start()
    emitter = Emitter(out_w)
    replies = LineReader(spec_r, limit=SPEC_LINE_LIMIT)
    child_spec = prepare(replies.readline(), emitter)
    assert isinstance(child_spec, ChildSpec)
    assert runs_blocking(child_spec)
    policy = asyncio.get_event_loop_policy()
    monkeypatch.setattr(policy, "new_event_loop", lambda: pytest.fail("the blocking path made an event loop"))
    try:
        code = run_without_loop(child_spec, emitter, replies)
    finally:
        os.close(out_w)
        answering.join(5)
        os.close(spec_w)
        os.close(spec_r)
    result = protocol[-1]
    assert result["type"] == "result"
    assert result["status"] == "succeeded", result["error"]
    assert code == 0
    assert "sekret" not in json.dumps(result)
