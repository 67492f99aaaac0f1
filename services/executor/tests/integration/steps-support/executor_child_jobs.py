"""Jobs that every way of running an execution must report alike, and what each must report.

Shared by the tests of the child's two paths (``test_executor_child_paths``) and of jobs the executor
runs without a child (``test_executor_direct``).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from executor_steps_support import run_job

from automation_executor.bridge import RecordingServices
from automation_executor.domain.outcome import RunOutcome

EXAMPLES = "automation_executor.examples.handlers"


def _python(name: str, handler: str, /, **args: Any) -> dict[str, Any]:
    return {"name": name, "type": "python", "config": {"handler": f"{EXAMPLES}:{handler}", "args": args}}


class _Echo(BaseHTTPRequestHandler):
    """Answers ``/status/<n>`` with that status, and anything else with 200 and a JSON echo of the request.
    No ``Date`` header and a fixed ``Server``: two runs of a job get the same answer."""

    server_version, sys_version = "echo", ""

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 2026 00:00:00 GMT"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length) if length else b""
        status = int(self.path.removeprefix("/status/")) if self.path.startswith("/status/") else 200
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "token": self.headers.get("X-Token"),
                "json": json.loads(sent) if sent else None,
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - the base class's names


@functools.cache
def echo_base() -> str:
    """The base URL of a local HTTP server for the jobs' ``http`` steps (started once, for the session)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, name="echo-server", daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


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
        # 3 s, as for the command below: at 1 s a spawned child under CI's full suite was once timed out
        # before its step began, and the two paths then differed by the lines it had not yet written.
        "timeout_seconds": 3,
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
        # Long enough for a spawned child to start and its command to say "ready" on a loaded machine
        # (at 1 s, a slow start under the full suite once timed the job out before the step began).
        "timeout_seconds": 3,
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
    "a NUL byte in a command's output": {
        "steps": [{"name": "nul", "type": "shell", "config": {"command": ["printf", "a\\000b\\n"]}}],
    },
    "a missing command": {
        "steps": [{"name": "missing", "type": "shell", "config": {"command": ["no-such-command-here"]}}],
    },
    "an unknown secret": {
        "steps": [{"name": "secret", "type": "shell", "config": {"command": ["echo", "${{ secrets.NOPE }}"]}}],
    },
    "requests: templates, a secret header, a JSON answer read by the next step, a refused status": {
        "steps": [
            {
                "name": "post",
                "type": "http",
                "config": {
                    "method": "POST",
                    "url": "${{ parameters.base }}/things",
                    "headers": {"X-Token": "${{ secrets.API_TOKEN }}"},
                    "json": {"v": "${{ parameters.v }}"},
                },
            },
            {"name": "use", "type": "shell", "config": {"command": ["echo", "${{ steps.post.output.body.json.v }}"]}},
            {
                "name": "missing",
                "type": "http",
                "config": {"method": "GET", "url": "${{ parameters.base }}/status/404", "expected_status": [200]},
            },
            {"name": "never", "type": "shell", "config": {"command": ["echo", "never"]}},
        ],
    },
    "commands, an event and a browser task": {
        "check": {
            "type": "shell",
            "config": {"command": ["echo", '{"should_perform": true, "perform_payload": {"n": 2}}']},
        },
        "steps": [
            {"name": "count", "type": "shell", "config": {"command": ["echo", "${{ check.payload.n }}"]}},
            {
                "name": "announce",
                "type": "event.emit",
                "config": {
                    "type": "inventory.synced",
                    "subject": "${{ parameters.v }}",
                    "data": {"n": "${{ check.payload.n }}"},
                },
            },
            {
                "name": "login",
                "type": "browser",
                "config": {
                    "actions": [
                        {"type": "goto", "url": "https://example.org/${{ parameters.v }}"},
                        {"type": "fill", "selector": "#pw", "value": "${{ secrets.API_TOKEN }}"},
                    ]
                },
            },
            {"name": "after", "type": "shell", "config": {"command": ["echo", "${{ steps.login.output.title }}"]}},
        ],
    },
}


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


ELAPSED = re.compile(r" in \d+ ms$")


def without_ids(outcome: RunOutcome, lines: Lines) -> tuple[RunOutcome, Lines]:
    """``outcome`` and ``lines`` with every UUID masked: each run has its own execution and job ids, and
    what derives from them (emitted events' ids and sources, browser task ids); and without the time a
    request took (``POST http://… -> 200 in 3 ms``)."""

    def mask(value: Any) -> Any:
        if isinstance(value, str):
            return ELAPSED.sub(" in <n> ms", UUID.sub("<uuid>", value))
        if isinstance(value, dict):
            return {key: mask(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mask(item) for item in value]
        return value

    return replace(outcome, outputs=mask(outcome.outputs)), [(a, b, mask(text)) for a, b, text in lines]


async def run_shared_job(
    tmp_path: Path, job: dict[str, Any], services: RecordingServices, settings: dict[str, Any] | None = None
) -> tuple[RunOutcome, Lines]:
    """Run one of :data:`JOBS` as every test of these runs it: the same parameters and secrets."""
    outcome, sink = await run_job(
        tmp_path,
        job["steps"],
        check=job.get("check"),
        parameters={"v": "a b", "base": echo_base()},
        secrets={"API_TOKEN": "tok-0123456789"},
        timeout_seconds=job.get("timeout_seconds", 30),
        settings={**(settings or {}), **job.get("settings", {})},
        services=services,
    )
    return outcome, sink.lines


def asked_of(services: RecordingServices) -> list[Any]:
    """What a run asked of the platform: the events it published and the browser tasks' actions."""
    return [(event.type, event.subject, event.data) for event in services.events] + [
        task.actions for task in services.tasks
    ]


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
    assert outcome.error == "timed out after 3s"
    assert ("system", "nap", "step nap (python) started") in lines  # the timeout met the handler, not the start
    assert ("system", None, "timed out after 3s: stopping (SIGTERM, SIGKILL after 30s)") in lines


def _nul_output(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["nul"]["stdout_tail"] == "a\ufffdb\n", "PostgreSQL keeps no NUL: U+FFFD stands for it"
    assert ("stdout", "nul", "a\ufffdb") in lines


def _missing_command(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "failed"
    assert outcome.exit_code == 127
    assert outcome.error == "step missing: not found: no-such-command-here"


def _unknown_secret(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "secret 'NOPE': not found" in outcome.error


def _event_and_browser(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "succeeded", outcome
    steps = outcome.outputs["steps"]
    assert set(steps["announce"]) == {"id", "type", "source", "subject"}
    assert steps["announce"]["subject"] == "a b"
    assert steps["login"]["outputs"] == {"fills": {"#pw": "***"}}, "the secret typed is redacted from the output"
    assert steps["after"]["stdout_tail"] == "Login\n"
    assert ("system", "announce", f"published inventory.synced ({steps['announce']['id']})") in lines


def _requests(outcome: RunOutcome, lines: Lines) -> None:
    assert outcome.status == "failed", outcome
    assert outcome.error == "step missing: unexpected status 404; expected 200"
    post = outcome.outputs["post"]
    assert post["status"] == 200
    assert post["body"] == {"method": "POST", "path": "/things", "token": "***", "json": {"v": "a b"}}
    assert post["headers"]["content-type"] == "application/json"
    assert outcome.outputs["use"]["stdout_tail"] == "a b\n"
    assert outcome.outputs["missing"]["status"] == 404, "a refused status keeps the response as the output"
    assert "never" not in outcome.outputs
    assert any(step == "post" and text.startswith(f"POST {echo_base()}/things -> 200 in ") for _, step, text in lines)


EXPECTED: dict[str, Callable[[RunOutcome, Lines], None]] = {
    "python handlers: plain and async, a secret, print, logging and an event": _handlers,
    "a failing handler": _failing_handler,
    "a hanging handler and its step timeout": _hanging_handler,
    "a job timeout while a handler sleeps": _job_timeout_in_handler,
    "check, templates, secrets and a failing step": _check_templates_secrets,
    "a step timeout and a background process": _step_timeout,
    "a job timeout, SIGTERM to a command that answers it": _job_timeout,
    "a NUL byte in a command's output": _nul_output,
    "a missing command": _missing_command,
    "an unknown secret": _unknown_secret,
    "requests: templates, a secret header, a JSON answer read by the next step, a refused status": _requests,
    "commands, an event and a browser task": _event_and_browser,
}
