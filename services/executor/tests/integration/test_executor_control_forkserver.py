"""The fork server with real processes: what a forked child is, and what happens when the server dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from automation_contracts import LogStream, RunRequested
from automation_executor import launch
from automation_executor.app import fork_server_environment
from automation_executor.domain.outcome import RunOutcome
from automation_executor.forkserver import client as forkserver_client
from automation_executor.launch import CURRENT_CHILD, ChildHandle, active_fork_server, fork_server
from automation_executor.runner import ChildRunner
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import run_request_data
from automation_testing import wait_until

pytestmark = pytest.mark.integration


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, stream: LogStream, step: str | None, text: str, ts: datetime | None = None) -> None:
        self.lines.append(text)


async def _run(tmp_path: Path, script: str, *extra: str, handle: ChildHandle | None = None) -> RunOutcome:
    data = run_request_data([{"name": "probe", "type": "shell", "config": {"command": ["sh", "-c", script, *extra]}}])
    request = RunRequested.model_validate(json.loads(json.dumps(data)))
    runner = ChildRunner(ExecutorSettings(env="development", executor_workdir_root=str(tmp_path)))
    token = CURRENT_CHILD.set(handle)
    try:
        return await runner.run(request, Sink())
    finally:
        CURRENT_CHILD.reset(token)


def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} for {pid}")


async def test_a_forked_child_has_its_own_group_workdir_and_environment(tmp_path: Path) -> None:
    os.environ["AUTOMATION_FORKSERVER_TEST_SECRET"] = "must-not-leak"
    try:
        async with fork_server(enabled=True, preload=["httpx"], env=fork_server_environment()) as server:
            assert server is not None
            handle = ChildHandle()
            script = (
                'echo "pgid=$(ps -o pgid= -p $PPID | tr -d " ") sid=$(ps -o sid= -p $PPID | tr -d " ")";'
                ' echo "cwd=$(readlink /proc/$PPID/cwd)";'
                ' echo "parent=$(ps -o ppid= -p $PPID | tr -d " ")";'
                ' tr "\\0" "\\n" < /proc/$PPID/environ | sed "s/^/child:/";'
                " env | sort"
            )
            outcome = await _run(tmp_path, script, handle=handle)
    finally:
        del os.environ["AUTOMATION_FORKSERVER_TEST_SECRET"]
    assert outcome.status == "succeeded", outcome
    assert handle.launcher == "forkserver"
    assert handle.pid is not None
    lines = outcome.outputs["probe"]["stdout_tail"].splitlines()
    assert lines[0] == f"pgid={handle.pid} sid={handle.pid}", "a session and process group of its own"
    workdir = lines[1].removeprefix("cwd=")
    assert Path(workdir).parent == tmp_path
    assert not os.path.exists(workdir), "the working directory is removed afterwards"  # noqa: ASYNC240
    assert lines[2] == f"parent={server.server_pid}", "forked by the fork server"
    child = [line.removeprefix("child:") for line in lines[3:] if line.startswith("child:")]
    assert child, "the forked child's environment block (inherited from the fork server) is readable"
    assert not any(line.startswith("AUTOMATION_") for line in child), "none of the executor's settings"
    command = dict(line.split("=", 1) for line in lines[3:] if "=" in line and not line.startswith("child:"))
    assert command["HOME"] == command["TMPDIR"] == workdir
    assert command["AUTOMATION_EXECUTION_ID"]
    assert "must-not-leak" not in "\n".join(lines)
    assert active_fork_server() is None, "stopped with the last user"


async def test_limits_apply_to_forked_children(tmp_path: Path) -> None:
    async with fork_server(enabled=True, env=fork_server_environment()):
        data = run_request_data([{"name": "n", "type": "shell", "config": {"command": ["sh", "-c", "ulimit -n"]}}])
        request = RunRequested.model_validate(json.loads(json.dumps(data)))
        settings = ExecutorSettings(env="development", executor_max_open_files=77, executor_workdir_root=str(tmp_path))
        outcome = await ChildRunner(settings).run(request, Sink())
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["n"]["stdout_tail"] == "77\n"


async def test_when_the_fork_server_dies_its_children_die_and_new_ones_are_spawned(tmp_path: Path) -> None:
    marker = f"zygote-{uuid.uuid4().hex}"
    async with fork_server(enabled=True, env=fork_server_environment()) as server:
        assert server is not None
        assert server.server_pid is not None
        handle = ChildHandle()
        running = asyncio.create_task(_run(tmp_path, "sleep 30", marker, handle=handle))

        def step_running() -> bool:
            for entry in os.listdir("/proc"):
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                        if marker.encode() in cmdline.read():
                            return True
                except OSError:
                    continue
            return False

        async def started() -> bool:
            return handle.pid is not None and step_running()

        await wait_until(started, what="the forked child's step")
        os.kill(server.server_pid, signal.SIGKILL)
        outcome = await asyncio.wait_for(running, 10)
        assert outcome.status == "failed"
        assert outcome.error is not None
        assert "SIGKILL" in outcome.error
        assert active_fork_server() is None
        spawned = ChildHandle()
        after: dict[str, Any] = {"outcome": await _run(tmp_path, "echo still here", handle=spawned)}
        assert after["outcome"].status == "succeeded"
        assert spawned.launcher == "spawn", "without a fork server, children are spawned"

        async def restarted() -> bool:
            return active_fork_server() is not None

        await wait_until(restarted, timeout=30, what="a new fork server")
        forked = ChildHandle()
        assert (await _run(tmp_path, "true", handle=forked)).status == "succeeded"
        assert forked.launcher == "forkserver"
    assert active_fork_server() is None


async def test_a_disabled_fork_server_spawns(tmp_path: Path) -> None:
    async with fork_server(enabled=False) as server:
        assert server is None
        handle = ChildHandle()
        outcome = await _run(tmp_path, "true", handle=handle)
    assert outcome.status == "succeeded"
    assert handle.launcher == "spawn"


WHERE = "automation_executor.examples.handlers:where"
LOADED = "automation_executor.examples.handlers:loaded"


async def _where(tmp_path: Path, handler: str = WHERE, *, preload: bool = True) -> RunOutcome:
    data = run_request_data([{"name": "probe", "type": "python", "config": {"handler": handler}}])
    request = RunRequested.model_validate(json.loads(json.dumps(data)))
    settings = ExecutorSettings(
        env="development", executor_workdir_root=str(tmp_path), executor_preload_handlers=preload
    )
    return await ChildRunner(settings).run(request, Sink())


@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "setting-off"])
async def test_the_fork_server_imports_a_handler_once_a_child_has_loaded_it(tmp_path: Path, preload: bool) -> None:
    async with fork_server(enabled=True, env=fork_server_environment()) as server:
        assert server is not None
        refused = await _where(tmp_path, "automation_executor.examples.handlers:undeclared", preload=preload)
        runs = [await _where(tmp_path, preload=preload) for _ in range(3)]
    assert refused.status == "failed"
    assert refused.error is not None
    assert "is not declared" in refused.error
    assert all(run.status == "succeeded" for run in runs), runs
    where = [run.outputs["probe"] for run in runs]
    assert len({w["pid"] for w in where}) == 3, "a child of its own for every run"
    assert where[0]["imported_in"] == where[0]["pid"], "the first child to call it imports the module itself"
    if preload:
        assert [w["imported_in"] for w in where[1:]] == [server.server_pid] * 2, "then the fork server holds it"
    else:
        assert [w["imported_in"] for w in where[1:]] == [w["pid"] for w in where[1:]], "every child imports it"


@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "setting-off"])
async def test_the_fork_server_imports_a_step_runner_once_a_child_has_used_it(tmp_path: Path, preload: bool) -> None:
    settings = ExecutorSettings(
        env="development", executor_workdir_root=str(tmp_path), executor_preload_step_runners=preload
    )
    probe = {"name": "probe", "type": "python", "config": {"handler": LOADED, "args": {"module": "asyncssh"}}}
    ssh = {"host": "127.0.0.1", "port": 1, "username": "u", "password_secret": "NO_PW", "known_hosts_secret": "NO_KH"}
    steps = [[probe], [{"name": "s", "type": "ssh.exec", "config": {**ssh, "command": "id"}}], [probe]]
    async with fork_server(enabled=True, env=fork_server_environment()) as server:
        assert server is not None
        outcomes = []
        for job in steps:
            request = RunRequested.model_validate(json.loads(json.dumps(run_request_data(job))))
            outcomes.append(await ChildRunner(settings).run(request, Sink()))
        learned = list(server.preloaded_modules)
    before, ssh_run, after = outcomes
    assert ssh_run.status == "failed", "its secrets are missing: it fails once its runner is imported"
    assert before.outputs["probe"] == {"loaded": False}, "the ssh steps are not preloaded from the start"
    assert after.outputs["probe"] == {"loaded": preload}
    assert ("automation_executor.child.ssh" in learned) is preload
    assert bool(learned) is preload, "nothing is learned with the setting off"


def _handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, in_fork_server: str) -> str:
    """A declared handler ``<name>:run`` in a module whose import runs ``in_fork_server`` only in the
    fork server's environment (which has no ``TMPDIR``; every run's child has its own); the handler."""
    modules = tmp_path / "modules"
    modules.mkdir(exist_ok=True)
    (modules / f"{name}.py").write_text(
        "import os\nimport time\n\n"
        f"automation_handlers = [{name + ':run'!r}]\n"
        f'if "TMPDIR" not in os.environ:\n    {in_fork_server}\n\n\n'
        "def run(_ctx):\n    return {'pid': os.getpid()}\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(modules))  # the fork server's and the children's
    return f"{name}:run"


async def _forked(tmp_path: Path, handler: str) -> None:
    """Run ``handler`` once: it succeeds, in a child forked by the fork server."""
    handle = ChildHandle()
    token = CURRENT_CHILD.set(handle)
    try:
        outcome = await asyncio.wait_for(_where(tmp_path, handler), 20)
    finally:
        CURRENT_CHILD.reset(token)
    assert outcome.status == "succeeded", outcome
    assert handle.launcher == "forkserver"


async def test_a_handler_whose_import_kills_the_fork_server_is_never_asked_of_one_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _handler_module(tmp_path, monkeypatch, "exits_in_fork_server", "os._exit(3)")
    monkeypatch.setattr(launch, "RESTART_BACKOFF_SECONDS", 0.0)
    monkeypatch.setattr(launch._forks, "next_restart", 0.0)  # an earlier test's backoff must not hold it back
    async with fork_server(enabled=True, env=fork_server_environment()) as first:
        assert first is not None
        await _forked(tmp_path, handler)  # a child imports it without harm
        killed = await _where(tmp_path, handler)  # the fork server imports it before this run's fork, and dies
        assert killed.status == "succeeded", killed
        assert not first.alive

        async def restarted() -> bool:
            server = active_fork_server()
            return server is not None and server is not first

        await wait_until(restarted, timeout=30, what="a new fork server")
        second = active_fork_server()
        assert second is not None
        for _ in range(2):
            await _forked(tmp_path, handler)
        assert second.alive, "the new server was never asked to import it"
        assert second.preloaded_handlers == []


async def test_a_handler_whose_import_hangs_in_the_fork_server_is_given_up_and_the_forks_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _handler_module(tmp_path, monkeypatch, "hangs_in_fork_server", "time.sleep(120)")
    monkeypatch.setattr(forkserver_client, "PRELOAD_SECONDS", 0.5)
    async with fork_server(enabled=True, env=fork_server_environment()) as server:
        assert server is not None
        for _ in range(3):  # the second run's fork waits for the import to be given up
            await _forked(tmp_path, handler)
        assert server.alive
        assert server.preloaded_handlers == []
