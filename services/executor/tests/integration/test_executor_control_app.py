"""The control plane end to end in one replica: cancellation, dead letters, per-job concurrency, limits, sandbox."""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from sqlalchemy import select

from automation_contracts import validate_event
from automation_db import create_engine, session_factory
from automation_executor.db.tables import Cancellation
from automation_executor.launch import active_command_server
from automation_executor.testing import ExecutorHarness, harness_settings, run_request_data
from automation_messaging import REASON_HEADER
from automation_testing import wait_until

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(database_url: str, amqp_url: str) -> AsyncIterator[ExecutorHarness]:
    settings = harness_settings(database_url, amqp_url, executor_kill_grace_seconds=2, shutdown_grace_seconds=5)
    async with ExecutorHarness(settings) as h:
        yield h


def _live_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and stat[stat.rindex(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


def _shell(name: str, script: str, *extra: str, **config: Any) -> dict[str, Any]:
    return {"name": name, "type": "shell", "config": {"command": ["sh", "-c", script, *extra], **config}}


async def test_the_worker_reports_its_launcher_and_sandbox(harness: ExecutorHarness) -> None:
    assert harness.client is not None
    body = (await harness.client.get("/api/v1/workers/self", headers=harness.admin_headers)).json()
    assert body["launcher"] == "forkserver"
    assert body["direct_commands"] is True, "jobs of commands only run without a child"
    assert isinstance(body["preloaded_handlers"], list)
    assert body["sandbox_available"] is True
    assert body["sandbox_problem"] is None
    assert body["workdir_root"] == tempfile.gettempdir(), "the default: the system's temporary directory"
    assert body["workdir_filesystem"], "read from this machine's mount table"


async def test_a_handler_the_first_run_loaded_is_held_by_the_fork_server_for_the_next(harness: ExecutorHarness) -> None:
    assert harness.client is not None
    where = "automation_executor.examples.handlers:where"
    seen = []
    for _ in range(2):
        data = run_request_data([{"name": "w", "type": "python", "config": {"handler": where}}])
        await harness.request_run(data)
        outcome = await harness.wait_outcome(data["execution_id"], timeout=30)
        assert outcome.type == "execution.succeeded", outcome.data
        seen.append(outcome.data["result"]["w"])
    assert seen[0]["imported_in"] == seen[0]["pid"], "the first child imports the module itself"
    assert seen[1]["imported_in"] not in {seen[1]["pid"], seen[0]["pid"]}, "the next one finds it in the fork server"
    body = (await harness.client.get("/api/v1/workers/self", headers=harness.admin_headers)).json()
    assert where in body["preloaded_handlers"]


async def test_a_step_runner_a_child_used_is_held_by_the_fork_server_for_the_next(harness: ExecutorHarness) -> None:
    assert harness.client is not None
    probe = {
        "name": "probe",
        "type": "python",
        "config": {"handler": "automation_executor.examples.handlers:loaded", "args": {"module": "asyncssh"}},
    }

    async def asyncssh_loaded_in_a_new_child() -> bool:
        data = run_request_data([probe])
        await harness.request_run(data)
        outcome = await harness.wait_outcome(data["execution_id"], timeout=30)
        assert outcome.type == "execution.succeeded", outcome.data
        return bool(outcome.data["result"]["probe"]["loaded"])

    assert not await asyncssh_loaded_in_a_new_child(), "the fork server does not preload the ssh steps"
    ssh = {"host": "127.0.0.1", "port": 1, "username": "u", "password_secret": "NO_PW", "known_hosts_secret": "NO_KH"}
    data = run_request_data([{"name": "s", "type": "ssh.exec", "config": {**ssh, "command": "id"}}])
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"], timeout=30)
    assert outcome.type == "execution.failed", "its secret is missing: the step fails after its runner was imported"
    assert await asyncssh_loaded_in_a_new_child(), "the next child finds the ssh runner (and asyncssh) loaded"
    body = (await harness.client.get("/api/v1/workers/self", headers=harness.admin_headers)).json()
    assert "automation_executor.child.ssh" in body["preloaded_step_runners"]
    assert "automation_executor.child.python_step" not in body["preloaded_step_runners"], "preloaded from the start"


async def test_a_running_execution_is_cancelled_sigterm_first_and_not_retried(harness: ExecutorHarness) -> None:
    marker = f"cancel-{uuid.uuid4().hex}"
    script = 'trap "echo got TERM; exit 0" TERM; echo trapped; sleep 30 & wait'
    data = run_request_data([_shell("wait", script, marker)], retries=3)
    await harness.request_run(data)

    async def trapped() -> bool:
        # Its log, not its process: the shell is in /proc (with the marker) before it has set its trap.
        return "trapped" in harness.log_text(data["execution_id"])

    await wait_until(trapped, interval=0.02, what="the step to run and set its trap")
    assert _live_processes(marker)
    await harness.cancel(data["execution_id"], reason="operator: wrong parameters")
    outcome = await harness.wait_outcome(data["execution_id"], timeout=15)
    assert outcome.type == "execution.cancelled"
    validate_event(outcome)
    assert outcome.data["reason"] == "operator: wrong parameters"

    async def gone() -> bool:
        return not _live_processes(marker)

    await wait_until(gone, timeout=5, what="the step's processes to be gone")
    text = harness.log_text(data["execution_id"])
    assert "got TERM" in text, "SIGTERM comes before SIGKILL"
    stopping = "cancelled (operator: wrong parameters): stopping (SIGTERM, SIGKILL after 2s)"
    assert text.index(stopping) < text.index("got TERM"), "the log says what the stop does, before it happens"
    assert "attempt 1 cancelled after" in text
    [attempt] = await harness.attempts(data["execution_id"])
    assert (attempt["status"], attempt["error"], attempt["will_retry"]) == (
        "cancelled",
        "operator: wrong parameters",
        False,
    )
    assert harness.of(data["execution_id"], "execution.failed") == []


async def _cancelled_once_logged(harness: ExecutorHarness, steps: list[dict[str, Any]], text: str) -> str:
    """Run ``steps``, cancel the run once its log has ``text``; the log of the cancelled run."""
    data = run_request_data(steps)
    await harness.request_run(data)
    await wait_until(harness.logged(data["execution_id"], text), interval=0.02, what=f"{text!r} in the log")
    await harness.cancel(data["execution_id"], reason="operator: stop")
    outcome = await harness.wait_outcome(data["execution_id"], timeout=15)
    assert outcome.type == "execution.cancelled"
    return harness.log_text(data["execution_id"])


async def test_no_step_starts_after_a_cancellation_even_when_the_step_before_ends_well(
    harness: ExecutorHarness,
) -> None:
    # The first step ends with exit 0 on the stop's SIGTERM; a job of commands runs in the executor itself,
    # which went on to the next step within the grace period.
    marker = f"after-{uuid.uuid4().hex}"
    script = 'trap "echo got TERM; exit 0" TERM; echo trapped; sleep 30 & wait'
    text = await _cancelled_once_logged(
        harness, [_shell("wait", script, marker), _shell("next", f"echo {marker}")], "trapped"
    )
    assert "got TERM" in text
    assert "step next not started: the run is being stopped" in text
    assert "step next (shell) started" not in text
    assert marker not in text.splitlines(), "the second step's command never ran"


async def test_a_command_killed_by_the_stop_is_logged_as_stopped(harness: ExecutorHarness) -> None:
    text = await _cancelled_once_logged(harness, [_shell("wait", "echo ready; exec sleep 30")], "ready")
    assert "step wait stopped: killed by SIGTERM (exit code 143)\n" in text
    assert "expected 0" not in text, "the exit codes a step expects are beside the point of a stop"


async def test_a_cancelled_child_is_logged_as_stopped_not_as_a_crash(harness: ExecutorHarness) -> None:
    sleep = "automation_executor.examples.handlers:sleep"
    data = run_request_data([{"name": "nap", "type": "python", "config": {"handler": sleep, "args": {"seconds": 30}}}])
    await harness.request_run(data)

    async def napping() -> bool:
        return "step nap (python) started" in harness.log_text(data["execution_id"])

    await wait_until(napping, interval=0.02, what="the python step to start in its child")
    await harness.cancel(data["execution_id"], reason="not today")
    outcome = await harness.wait_outcome(data["execution_id"], timeout=15)
    assert (outcome.type, outcome.data["reason"]) == ("execution.cancelled", "not today")
    text = harness.log_text(data["execution_id"])
    assert "cancelled (not today): stopping (SIGTERM, SIGKILL after 2s)" in text
    assert "the executor child process ended on the stop (exit code 143)" in text, text
    assert "without a result" not in text, "a child that ends on a stop request did not crash"


async def _remembered(database_url: str, execution_id: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        sessions = session_factory(engine)

        async def found() -> bool:
            async with sessions() as session:
                stmt = select(Cancellation).where(Cancellation.execution_id == uuid.UUID(execution_id))
                return (await session.execute(stmt)).scalar_one_or_none() is not None

        await wait_until(found, what="the cancellation to be remembered")
    finally:
        await engine.dispose()


async def test_a_run_cancelled_before_it_arrives_is_dropped(
    harness: ExecutorHarness, database_url: str, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    data = run_request_data([_shell("touch", f"touch {ran}")])
    await harness.cancel(data["execution_id"], reason="never mind")
    await _remembered(database_url, data["execution_id"])
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.cancelled"
    assert outcome.data["reason"] == "never mind"
    assert harness.of(data["execution_id"], "execution.started") == []
    [log] = harness.of(data["execution_id"], "execution.log")
    assert [e["text"] for e in log.data["entries"]] == ["attempt 1 cancelled before it started: never mind"]
    assert not ran.exists()


async def test_the_last_failure_goes_to_automation_dead_with_its_reason(harness: ExecutorHarness) -> None:
    data = run_request_data([_shell("boom", "exit 3")], priority=8)
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.failed"
    assert outcome.data["will_retry"] is False
    letters: list[Any] = []

    async def dead() -> bool:
        letters.extend(await harness.dead_letters())
        return any(data["execution_id"].encode() in m.body for m in letters)

    await wait_until(dead, what="the run request in automation.dead")
    [letter] = [m for m in letters if data["execution_id"].encode() in m.body]
    headers = letter.headers
    assert str(headers[REASON_HEADER]).startswith("failed after 1 attempt: step boom: exit code 3")
    assert headers["x-original-exchange"] == "automation.commands"
    assert headers["x-original-routing-key"] == "run.requested"
    assert headers["x-original-queue"] == "executor.runs"
    assert headers["x-dead-lettered-by"] == "executor"
    assert letter.routing_key == "run.requested"
    assert letter.message_id is not None


async def test_max_concurrency_one_runs_a_jobs_executions_one_after_the_other(harness: ExecutorHarness) -> None:
    job_id = uuid.uuid4()
    runs = [run_request_data([_shell("slow", "sleep 0.7")], job_id=job_id, max_concurrency=1) for _ in range(3)]
    throttled_before = REGISTRY.get_sample_value("automation_executor_throttled_total") or 0.0
    for data in runs:
        await harness.request_run(data)
    spans: list[tuple[datetime, datetime]] = []
    for data in runs:
        outcome = await harness.wait_outcome(data["execution_id"], timeout=30)
        assert outcome.type == "execution.succeeded", outcome.data
        spans.append(
            (datetime.fromisoformat(outcome.data["started_at"]), datetime.fromisoformat(outcome.data["finished_at"]))
        )
    spans.sort()
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end, f"two runs of the job overlapped: {spans}"
    assert (REGISTRY.get_sample_value("automation_executor_throttled_total") or 0.0) > throttled_before
    for data in runs:
        [attempt] = await harness.attempts(data["execution_id"])
        assert attempt["attempt"] == 1, "being put back is not an attempt"


async def test_the_command_server_holds_the_executors_limits_and_a_jobs_commands_inherit_them(
    harness: ExecutorHarness,
) -> None:
    server = active_command_server()
    assert server is not None
    assert server.held_limits == [("RLIMIT_CORE", 0, 0), ("RLIMIT_NOFILE", 1024, 1024)], "the default settings'"
    data = run_request_data([_shell("limits", "ulimit -n; ulimit -Hn; ulimit -c")])
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.succeeded", outcome.data
    assert outcome.data["result"]["limits"]["stdout_tail"] == "1024\n1024\n0\n"


async def test_a_job_can_lower_the_executors_resource_limits(harness: ExecutorHarness) -> None:
    data = run_request_data(
        [_shell("limits", "ulimit -n; ulimit -f")], limits={"open_files": 64, "file_size_bytes": 1024 * 1024}
    )
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.succeeded", outcome.data
    assert outcome.data["result"]["limits"]["stdout_tail"] == "64\n2048\n"  # ulimit -f counts 512-byte blocks


async def test_sandboxed_steps_see_a_read_only_system_a_private_tmp_and_no_network(
    harness: ExecutorHarness, tmp_path: Path
) -> None:
    secret = tmp_path / "host-file"
    secret.write_bytes(b"host")
    probe = (
        f"touch /usr/sandbox-probe 2>/dev/null && echo system-writable; echo data > out && cat out;"
        f" ls {secret} 2>/dev/null || echo tmp-private; grep -c : /proc/net/dev"
    )
    offline = _shell("offline", probe, sandbox="bubblewrap", network=False)
    online = _shell("online", "grep -c : /proc/net/dev", sandbox="bubblewrap", network=True)
    data = run_request_data([offline, online])
    await harness.request_run(data)
    outcome = await harness.wait_outcome(data["execution_id"])
    assert outcome.type == "execution.succeeded", outcome.data
    lines = outcome.data["result"]["offline"]["stdout_tail"].split()
    assert lines == ["data", "tmp-private", "1"], "writable workdir only, own /tmp, loopback only"
    host_interfaces = Path("/proc/net/dev").read_text().count(":")  # noqa: ASYNC240 - a small /proc file
    assert outcome.data["result"]["online"]["stdout_tail"].strip() == str(host_interfaces)
