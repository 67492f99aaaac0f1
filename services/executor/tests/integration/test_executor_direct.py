"""Jobs of commands only, run without a child: the command server and the runner's direct path.

Real processes throughout: the command server is started as the service starts it, commands are real
programs, and what they see of themselves (session, group, limits, signals, descriptors) is read from
``/proc`` by the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from automation_executor.app import fork_server_environment
from automation_executor.bridge import RecordingServices
from automation_executor.child.limits import limit_plan
from automation_executor.direct import DIRECT_KINDS, Commands
from automation_executor.domain.protocol import Limits
from automation_executor.forkserver.client import ForkServer, ForkServerUnavailable
from automation_executor.launch import CURRENT_CHILD, ChildHandle, active_command_server
from automation_executor.processes import Spawned
from automation_executor.testing import COMMAND_WAYS, command_server_by_way

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_child_jobs import EXPECTED, JOBS, asked_of, run_shared_job, without_ids
from executor_steps_support import browser_answer, direct_commands, forked_children, run_job

pytestmark = pytest.mark.integration

DIRECT_JOBS = [
    name
    for name, job in JOBS.items()
    if all(step["type"] in DIRECT_KINDS for step in [*job["steps"], job.get("check") or job["steps"][0]])
]


DEFAULT_PLAN = [("RLIMIT_CORE", 0, 0), ("RLIMIT_NOFILE", 1024, 1024)]
"""The limits of the executor's default settings."""


@pytest.fixture(params=COMMAND_WAYS)
def way(request: pytest.FixtureRequest) -> str:
    """The command server's ways to give a command its limits (:data:`automation_executor.testing.COMMAND_WAYS`)."""
    return str(request.param)


@contextlib.contextmanager
def _handle() -> Iterator[ChildHandle]:
    """The handle a run reports its process to, as a worker slot gives it (:data:`CURRENT_CHILD`)."""
    handle = ChildHandle()
    token = CURRENT_CHILD.set(handle)
    try:
        yield handle
    finally:
        CURRENT_CHILD.reset(token)


@contextlib.asynccontextmanager
async def _server(way: str, rlimits: Sequence[tuple[str, int, int]] = ()) -> AsyncIterator[ForkServer]:
    """A command server started the ``way`` given, holding ``rlimits`` (where it can) when ``held``."""
    server = command_server_by_way(way, rlimits)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def _output(spawned: Spawned) -> tuple[str, str, int]:
    assert spawned.process.stdout is not None
    assert spawned.process.stderr is not None
    out, err = await asyncio.gather(spawned.process.stdout.read(), spawned.process.stderr.read())
    return out.decode(), err.decode(), await spawned.wait_exit()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False  # a zombie: dead, waiting for its parent
    return True


async def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_command_gets_its_own_session_limits_default_signals_and_nothing_else(tmp_path: Path, way: str) -> None:
    probe = (
        'echo "pid=$$ pgid=$(ps -o pgid= -p $$ | tr -d " ") sid=$(ps -o sid= -p $$ | tr -d " ")";'
        ' echo "parent=$(ps -o ppid= -p $$ | tr -d " ")";'
        ' echo "cwd=$(pwd)";'
        ' echo "nofile=$(ulimit -n) as=$(ulimit -v) fsize=$(ulimit -f) cpu=$(ulimit -t) core=$(ulimit -c)";'
        # The shell reads its own state with builtins: a child run in between could read it while the
        # shell is inside fork(), which blocks every signal for a moment.
        ' while IFS= read -r l; do case "$l" in Sig[IB]*) echo "$l";; esac; done < /proc/$$/status;'
        " echo fds= /proc/$$/fd/*;"
        ' read -r line; echo "stdin=$? [$line]";'
        " env | sort"
    )
    rlimits = [
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_NOFILE", 64, 64),
        ("RLIMIT_AS", 1 << 30, 1 << 30),
        ("RLIMIT_FSIZE", 1 << 20, 1 << 20),
        ("RLIMIT_CPU", 60, 61),
    ]
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    async with _server(way, rlimits) as server:
        spawned = await server.execute(["sh", "-c", probe], cwd=str(tmp_path), env=env, rlimits=rlimits)
        out, err, code = await _output(spawned)
        server_pid = server.server_pid
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert lines[0] == f"pid={spawned.pid} pgid={spawned.pid} sid={spawned.pid}", "a session and group of its own"
    assert lines[1] == f"parent={server_pid}", "the command server is the parent, not the executor"
    assert lines[2] == f"cwd={tmp_path}"
    assert lines[3] == f"nofile=64 as={(1 << 30) // 1024} fsize={(1 << 20) // 512} cpu=60 core=0"
    ignored = int(next(line for line in lines if line.startswith("SigIgn:")).split()[1], 16)
    # What the server ignores (SIGINT) or Python does (SIGPIPE, SIGXFSZ) is back at its default. (A
    # signal ignored by whoever started the executor stays ignored, as with any exec; glibc's
    # posix_spawn also leaves its internal signals 32 and 33 ignored.)
    reset = [signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGCHLD]
    assert not [sig.name for sig in reset if ignored & (1 << (sig - 1))], f"SigIgn {ignored:#x}"
    assert "SigBlk:\t0000000000000000" in lines
    fds = sorted(int(path.rsplit("/", 1)[1]) for path in next(x for x in lines if x.startswith("fds=")).split()[1:])
    assert fds[:3] == [0, 1, 2]
    assert len(fds) == 4, f"only stdin, stdout, stderr (and the glob's own directory): {fds}"
    assert "stdin=1 []" in lines, "stdin reads /dev/null"
    assert [line for line in lines if "=" in line and line.split("=")[0] in {"ONLY", "PATH"}] == [
        "ONLY=this",
        f"PATH={os.environ['PATH']}",
    ]
    assert not any(line.startswith(("AUTOMATION_", "PYTHON")) for line in lines), "exactly the environment given"


def _proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    """``/proc/<pid>/limits``: soft and hard of each limit, by its name there ("Max open files")."""
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): (row[26:47].strip(), row[47:68].strip()) for row in rows}


async def test_the_server_holds_what_it_can_and_each_command_gets_the_rest(tmp_path: Path) -> None:
    """Held limits are the server's own, soft and hard, so every command inherits them; CPU seconds
    (never held: the server's CPU time only grows) are still set on each command."""
    plan = [
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_NOFILE", 256, 256),
        ("RLIMIT_FSIZE", 1 << 20, 1 << 20),
        ("RLIMIT_CPU", 60, 61),
    ]
    probe = 'echo "$(ulimit -n) $(ulimit -Hn) $(ulimit -f) $(ulimit -Hf) $(ulimit -c) $(ulimit -t) $(ulimit -Ht)"'
    env = {"PATH": os.environ["PATH"]}
    async with _server("held", plan) as server:
        assert server.held_limits == plan[:3]
        assert server.server_pid is not None
        own = _proc_limits(server.server_pid)
        spawned = await server.execute(["sh", "-c", probe], cwd=str(tmp_path), env=env, rlimits=plan)
        out, err, code = await _output(spawned)
        lower, lower_err, lower_code = await _output(
            await server.execute(
                ["sh", "-c", "ulimit -n; ulimit -Hn"], cwd=str(tmp_path), env=env, rlimits=[("RLIMIT_NOFILE", 32, 32)]
            )
        )
    assert own["Max open files"] == ("256", "256")
    assert own["Max file size"] == (str(1 << 20), str(1 << 20))
    assert own["Max core file size"] == ("0", "0")
    assert own["Max cpu time"] == ("unlimited", "unlimited"), "CPU seconds are never held"
    assert (out, err, code) == (f"256 256 {(1 << 20) // 512} {(1 << 20) // 512} 0 60 61\n", "", 0)
    assert (lower, lower_err, lower_code) == ("32\n32\n", "", 0), "a lower limit than the server's is set too"


async def test_a_server_that_cannot_hold_its_limits_does_not_start() -> None:
    """The executor then runs such jobs in a child (see the fallback test below)."""
    bad = [("RLIMIT_NOFILE", "many", 1024)]
    server = ForkServer(env=fork_server_environment(), child=False, hold_limits=bad)  # type: ignore[arg-type]
    with pytest.raises(ForkServerUnavailable, match="cannot hold the limits"):
        await server.start()
    assert not server.alive


async def test_a_command_that_cannot_start_fails_with_its_errno_and_name(tmp_path: Path, way: str) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    env = {"PATH": os.environ["PATH"]}
    async with _server(way, DEFAULT_PLAN) as server:
        with pytest.raises(FileNotFoundError) as missing:
            await server.execute(["no-such-command-here"], cwd=str(tmp_path), env=env)
        assert missing.value.filename == "no-such-command-here"
        with pytest.raises(PermissionError) as denied:
            await server.execute([str(script)], cwd=str(tmp_path), env=env)
        assert denied.value.filename == str(script)
        with pytest.raises(FileNotFoundError) as no_dir:
            await server.execute(["true"], cwd=str(tmp_path / "gone"), env=env)
        assert no_dir.value.filename == str(tmp_path / "gone")
        with pytest.raises(OSError, match="unknown resource limit"):
            await server.execute(["true"], cwd=str(tmp_path), env=env, rlimits=[("RLIMIT_NOPE", 1, 1)])
        out, _, code = await _output(await server.execute(["echo", "still serving"], cwd=str(tmp_path), env=env))
    assert (out, code) == ("still serving\n", 0)


@pytest.mark.parametrize("way", ["held", "fork"])
async def test_a_script_without_an_interpreter_line_fails_as_it_does_with_subprocess(tmp_path: Path, way: str) -> None:
    """``exec`` refuses it (ENOEXEC), as in a child's ``subprocess``; only ``execvp`` (which ``prlimit``
    uses, the way that is not the default) would run it with ``/bin/sh`` instead."""
    script = tmp_path / "no-interpreter-line"
    script.write_text("echo ran\n")
    script.chmod(0o755)
    with pytest.raises(OSError, match="Exec format error") as by_subprocess:
        await asyncio.create_subprocess_exec(str(script))
    env = {"PATH": os.environ["PATH"]}
    async with _server(way, DEFAULT_PLAN) as server:
        with pytest.raises(OSError, match="Exec format error") as by_server:
            await server.execute([str(script)], cwd=str(tmp_path), env=env, rlimits=DEFAULT_PLAN)
    assert by_server.value.errno == by_subprocess.value.errno == errno.ENOEXEC
    assert by_server.value.filename == str(script)


async def test_when_the_executor_goes_its_commands_die(tmp_path: Path, way: str) -> None:
    async with _server(way, DEFAULT_PLAN) as server:
        spawned = await server.execute(
            ["sh", "-c", "sleep 300 & echo $!; wait"], cwd=str(tmp_path), env={"PATH": os.environ["PATH"]}
        )
        assert spawned.process.stdout is not None
        background = int(await spawned.process.stdout.readline())
        assert _alive(spawned.pid)
        assert _alive(background)
        # The executor's end of the socket closes (as when it is SIGKILLed): the server kills every group.
    assert await _gone(spawned.pid)
    assert await _gone(background), "the command's background process too (its process group)"


async def _run_both(tmp_path: Path, job: dict[str, Any]) -> list[tuple[Any, Any, ChildHandle]]:
    results = []
    asked = []
    for direct in (True, False):
        services = RecordingServices(browser_answer)
        with _handle() as handle:
            async with direct_commands() if direct else forked_children(), asyncio.timeout(20):
                outcome, lines = await run_shared_job(tmp_path, job, services)
        results.append((outcome, lines, handle))
        asked.append(asked_of(services))
    assert asked[0] == asked[1], "the same events published and browser tasks sent"
    return results


@pytest.mark.parametrize("name", DIRECT_JOBS)
async def test_a_job_without_a_child_reports_as_it_does_in_one(tmp_path: Path, name: str) -> None:
    (direct, direct_lines, direct_handle), (child, child_lines, child_handle) = await _run_both(tmp_path, JOBS[name])
    assert direct_handle.launcher == "command-server", "ran without a child"
    assert child_handle.launcher == "forkserver"
    assert without_ids(direct, direct_lines) == without_ids(child, child_lines)
    assert "tok-0123456789" not in repr(direct) + repr(direct_lines)
    EXPECTED[name](direct, direct_lines)


async def test_each_command_start_is_measured_under_the_command_server_label(tmp_path: Path) -> None:
    steps = [{"name": f"s{n}", "type": "shell", "config": {"command": ["true"]}} for n in range(3)]
    labels = {"launcher": "command-server"}
    before = REGISTRY.get_sample_value("automation_executor_child_launch_seconds_count", labels) or 0.0
    async with direct_commands():
        outcome, _ = await run_job(tmp_path, steps)
    assert outcome.status == "succeeded", outcome
    assert REGISTRY.get_sample_value("automation_executor_child_launch_seconds_count", labels) == before + 3


async def test_what_a_step_left_running_is_killed_when_the_run_ends(tmp_path: Path) -> None:
    steps = [{"name": "bg", "type": "shell", "config": {"command": ["sh", "-c", "sleep 300 & echo $!"]}}]
    async with direct_commands():
        outcome, _ = await run_job(tmp_path, steps)
    assert outcome.status == "succeeded", outcome
    assert await _gone(int(outcome.outputs["bg"]["stdout_tail"]))


async def test_a_cwd_takes_templates_and_a_missing_one_is_named(tmp_path: Path) -> None:
    steps = [
        {"name": "mk", "type": "shell", "config": {"command": ["mkdir", "-p", "a dir"]}},
        {"name": "pwd", "type": "shell", "config": {"command": ["pwd"], "cwd": "${{ parameters.d }}"}},
    ]
    with _handle() as handle:
        async with direct_commands():
            outcome, _ = await run_job(tmp_path, steps, parameters={"d": "a dir"})
            missing, _ = await run_job(tmp_path, steps[1:], parameters={"d": "nope"})
    assert handle.launcher == "command-server"
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["pwd"]["stdout_tail"].endswith("/a dir\n")
    assert (missing.status, missing.exit_code) == ("failed", None)
    assert missing.error == "step pwd: working directory not found: nope"


async def test_a_job_timeout_gives_the_command_the_whole_grace_period(tmp_path: Path) -> None:
    cleanup = (
        "trap 'trap : TERM; echo cleanup started; sleep 2.5; echo cleanup done; exit 0' TERM;"
        " echo ready; sleep 60 & wait"
    )
    steps = [{"name": "slow", "type": "shell", "config": {"command": ["sh", "-c", cleanup]}}]
    with _handle() as handle:
        async with direct_commands():
            outcome, sink = await run_job(
                tmp_path, steps, timeout_seconds=1, settings={"executor_kill_grace_seconds": 4}
            )
    assert handle.launcher == "command-server"
    assert outcome.status == "timed_out", outcome
    assert [line for line in sink.of("slow") if not line.startswith("step ")] == [
        "ready",
        "cleanup started",
        "cleanup done",
    ]


async def test_a_cancellation_reaches_the_running_command(tmp_path: Path) -> None:
    steps = [
        {"name": "first", "type": "shell", "config": {"command": ["true"]}},
        {
            "name": "wait",
            "type": "shell",
            "config": {"command": ["sh", "-c", 'trap "echo got TERM; exit 3" TERM; echo ready; sleep 300 & wait']},
        },
    ]
    with _handle() as handle:
        async with direct_commands():
            run = asyncio.create_task(run_job(tmp_path, steps))
            deadline = time.monotonic() + 10
            while handle.pid is None or not _runs(handle.pid, "sleep"):
                assert time.monotonic() < deadline, "the second command never started"
                await asyncio.sleep(0.02)
            os.killpg(handle.pid, signal.SIGTERM)  # what Slot.stop does on a cancellation
            outcome, sink = await asyncio.wait_for(run, 10)
    assert outcome.status == "failed"
    assert sink.of("wait")[-2:] == ["got TERM", "step wait failed: exit code 3; expected 0"]


async def test_a_run_being_stopped_starts_no_further_command(tmp_path: Path) -> None:
    steps = [{"name": "hi", "type": "shell", "config": {"command": ["echo", "hi"]}}]
    with _handle() as handle:
        handle.stopping = True  # what Slot.stop sets before its SIGTERM
        async with direct_commands():
            outcome, sink = await run_job(tmp_path, steps)
        assert (outcome.status, outcome.error) == ("failed", "stopped before step hi")
        assert sink.of("hi") == ["step hi not started: the run is being stopped"]
        async with _server("held") as server:  # nor does the spawner start one for a step already under way
            with pytest.raises(OSError, match="the run is being stopped") as refused:
                await Commands(server, limit_plan(Limits())[0], handle)(["true"], cwd=str(tmp_path), env={})
    assert refused.value.errno == errno.ECANCELED


def _runs(pgid: int, program: str) -> bool:
    """Whether a process of group ``pgid`` runs ``program`` (its argv[0]; the shell whose script names
    the program does not count: it has not started it yet, and may not have set its trap)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if (
                    int((entry / "stat").read_text().split(") ")[1].split()[2]) == pgid
                    and (entry / "cmdline").read_text().split("\0")[0] == program
                ):
                    return True
    return False


async def test_without_its_command_server_a_job_of_commands_runs_in_a_child(tmp_path: Path) -> None:
    steps = [{"name": "hi", "type": "shell", "config": {"command": ["echo", "hi"]}}]
    with _handle() as handle:
        async with direct_commands():
            server = active_command_server()
            assert server is not None
            assert server.server_pid is not None
            os.kill(server.server_pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while server.alive:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            async with forked_children():
                outcome, _ = await run_job(tmp_path, steps)
    assert outcome.status == "succeeded", outcome
    assert handle.launcher == "forkserver"


async def test_the_setting_turns_the_direct_path_off(tmp_path: Path) -> None:
    steps = [{"name": "hi", "type": "shell", "config": {"command": ["echo", "hi"]}}]
    with _handle() as handle:
        async with direct_commands(), forked_children():
            outcome, _ = await run_job(tmp_path, steps, settings={"executor_direct_commands": False})
    assert outcome.status == "succeeded", outcome
    assert handle.launcher == "forkserver"
