"""Helpers of the step-type tests: run a job's steps in a real child process, collect its log lines.

Test modules run in importlib mode; they put this directory (``steps-support``, a name that is no
package, so mypy sees its modules as top-level ones too) on ``sys.path`` to import this module.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from automation_contracts import BrowserResult, BrowserTask, LogStream, RunRequested
from automation_executor.app import fork_server_environment
from automation_executor.bridge import PlatformServices
from automation_executor.child.limits import limit_plan
from automation_executor.domain.outcome import RunOutcome
from automation_executor.launch import command_server, fork_server
from automation_executor.runner import ChildRunner, default_limits
from automation_executor.secrets import SecretResolver, SecretsConfig
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import run_request_data

INJECTIONS = ["; rm -rf / #", "$(touch {marker})", "`touch {marker}`", "' OR 1=1 --", "a' ; touch {marker} ; echo '"]
"""Parameter values that would run something if they were pasted into code (``{marker}``: a file path)."""
PRELOAD = [
    "httpx",
    "asyncssh",
    "winrm",
    "automation_executor.child.shell",
    "automation_executor.child.http",
    "automation_executor.child.python_step",
    "automation_executor.child.ssh",
    "automation_executor.child.winrm",
    "automation_executor.child.browser",
    "automation_executor.child.events",
]
"""What the tests' fork server imports once, so each child starts in milliseconds."""


@contextlib.asynccontextmanager
async def forked_children() -> AsyncIterator[None]:
    """Start the children of the block from a preloaded fork server, as the service does."""
    async with fork_server(enabled=True, preload=PRELOAD, env=fork_server_environment()):
        yield


@contextlib.asynccontextmanager
async def direct_commands() -> AsyncIterator[None]:
    """Run jobs of ``shell`` steps only without a child in the block, as the service does (the command server)."""
    plan, _ = limit_plan(default_limits(ExecutorSettings(env="development")))
    async with command_server(enabled=True, env=fork_server_environment(), hold_limits=plan) as server:
        assert server is not None, "the command server did not start"
        yield


def injection_values(marker: str) -> dict[str, str]:
    """Every injection value, as parameters ``v0``, ``v1``, …, each aimed at creating ``marker``."""
    return {f"v{index}": template.format(marker=marker) for index, template in enumerate(INJECTIONS)}


class ListSink:
    """Collects log lines as the runner reports them."""

    def __init__(self) -> None:
        self.lines: list[tuple[LogStream, str | None, str]] = []

    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> None:
        self.lines.append((stream, step, text))

    def text(self, stream: LogStream | None = None) -> str:
        return "\n".join(t for s, _, t in self.lines if stream is None or s == stream)

    def of(self, step: str) -> list[str]:
        return [t for _, s, t in self.lines if s == step]


async def run_job(
    tmp_path: Path,
    steps: list[dict[str, Any]],
    *,
    check: dict[str, Any] | None = None,
    services: PlatformServices | None = None,
    secrets: dict[str, str] | None = None,
    secrets_dir: Path | None = None,
    timeout_seconds: int = 30,
    parameters: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[RunOutcome, ListSink]:
    """Run ``steps`` (and ``check``) once in a child, with secrets from ``secrets`` (as environment variables)."""
    data = run_request_data(steps, parameters=parameters, timeout_seconds=timeout_seconds)
    if check is not None:
        data["job"]["check"] = {"name": "check", **check}
    request = RunRequested.model_validate(json.loads(json.dumps(data)))
    environ = {f"AUTOMATION_SECRET_{name}": value for name, value in (secrets or {}).items()}
    resolver = SecretResolver(SecretsConfig(directory=str(secrets_dir) if secrets_dir is not None else None), environ)
    workdirs = tmp_path / "work"
    workdirs.mkdir(exist_ok=True)
    runner = ChildRunner(
        ExecutorSettings(env="development", executor_workdir_root=str(workdirs), **(settings or {})),
        services=services,
        secrets=resolver,
    )
    sink = ListSink()
    outcome = await runner.run(request, sink)
    return outcome, sink


def browser_answer(task: BrowserTask) -> BrowserResult:
    """browser-pool's answer in these tests: the fills as outputs; a click on ``#missing`` fails."""
    fills = {a.selector: a.value for a in task.actions if a.type == "fill"}
    ok = not any(a.type == "click" and a.selector == "#missing" for a in task.actions)
    return BrowserResult(
        task_id=task.task_id,
        ok=ok,
        title="Login",
        url="https://example.org/login",
        outputs={"fills": fills},
        artifacts=[],
        error=None if ok else "action 1 (click): Timeout 500ms exceeded.",
        duration_seconds=0.2,
    )
