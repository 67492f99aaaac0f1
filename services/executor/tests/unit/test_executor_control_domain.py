"""The control plane's pure parts: the attempt state machine, endings, dead letters, limits, sandbox argv."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from automation_contracts import ResourceLimits, RunRequested, StepSpec
from automation_executor.domain.attempts import (
    ATTEMPT_STATUSES,
    TERMINAL_STATUSES,
    after_failure,
    final_failure_reason,
    poison_reason,
    status_check_sql,
)
from automation_executor.domain.backoff import LADDER_SECONDS
from automation_executor.domain.outcome import RunOutcome
from automation_executor.followups import plan_cancelled, plan_lost, plan_outcome
from automation_executor.joblimits import effective_settings
from automation_executor.sandbox import SandboxStatus, sandbox_refusal, wrap_argv
from automation_executor.settings import ExecutorSettings
from automation_executor.testing import run_request_data
from automation_messaging import REASON_HEADER

ROUTES = {s: f"delay-{s}" for s in LADDER_SECONDS}
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _top(low: float, high: float) -> float:
    return high


def _request(**kwargs: Any) -> RunRequested:
    data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}], **kwargs)
    data["job"]["priority"] = 8
    return RunRequested.model_validate(json.loads(json.dumps(data)))


def test_every_status_but_running_and_released_is_terminal() -> None:
    assert set(ATTEMPT_STATUSES) - TERMINAL_STATUSES == {"running", "released"}
    assert "'cancelled'" in status_check_sql()
    assert "'released'" in status_check_sql()


@pytest.mark.parametrize(
    ("attempt", "retries", "permanent", "retry"),
    [(1, 0, False, False), (1, 1, False, True), (2, 1, False, False), (1, 5, True, False)],
)
def test_retry_follows_the_policy(attempt: int, retries: int, permanent: bool, retry: bool) -> None:
    decision = after_failure(attempt=attempt, retries=retries, error="boom", permanent=permanent)
    assert decision.retry is retry
    assert decision.error == "boom"
    if not retry:
        assert decision.dead_letter_reason == final_failure_reason(attempt, "boom")


def test_reasons_read_well() -> None:
    assert final_failure_reason(1, "exit code 3") == "failed after 1 attempt: exit code 3"
    assert final_failure_reason(3, "x") == "failed after 3 attempts: x"
    assert poison_reason(3) == "poison: killed its executor 3 times"


def test_a_run_that_keeps_killing_its_executor_is_poison_whatever_its_retries() -> None:
    assert after_failure(attempt=2, retries=10, error="executor lost", lost_total=2, max_lost=3).retry
    poison = after_failure(attempt=3, retries=10, error="executor lost", lost_total=3, max_lost=3)
    assert not poison.retry
    assert poison.poison
    assert poison.error == poison.dead_letter_reason == "poison: killed its executor 3 times"
    assert not after_failure(attempt=1, retries=1, error="x", lost_total=0, max_lost=0).poison


def test_a_failure_with_retries_left_plans_the_next_attempt_with_the_jobs_priority() -> None:
    request = _request(retries=2, base_seconds=10, max_seconds=60)
    ending = plan_outcome(
        request,
        RunOutcome(status="failed", exit_code=3, error="exit code 3"),
        started_at=NOW,
        finished_at=NOW,
        routes=ROUTES,
        rand=_top,
    )
    assert ending.will_retry
    assert ending.delay_seconds == 10
    assert ending.next_attempt_at == NOW + timedelta(seconds=10)
    assert ending.dead_letter is None
    terminal, retry = ending.messages
    assert (terminal.exchange, terminal.event.type) == ("automation.events", "execution.failed")
    assert (retry.exchange, retry.routing_key, retry.priority) == ("automation.retry", "delay-10", 8)
    assert isinstance(retry.event.data, dict)
    assert retry.event.data["attempt"] == 2
    assert ending.values["status"] == "failed"
    assert ending.values["will_retry"] is True
    assert ending.values["request"] is None
    assert ending.values["lease_expires_at"] is None


def test_the_last_failure_is_dead_lettered_with_its_reason_and_the_consumer_runners_headers() -> None:
    request = _request(attempt=2, retries=1)
    ending = plan_outcome(
        request,
        RunOutcome(status="timed_out", error="timed out after 5s"),
        started_at=NOW,
        finished_at=NOW,
        routes=ROUTES,
    )
    assert not ending.will_retry
    assert ending.dead_letter == "final_failure"
    terminal, letter = ending.messages
    assert terminal.event.type == "execution.timed_out"
    assert isinstance(terminal.event.data, dict)
    assert terminal.event.data["will_retry"] is False
    assert (letter.exchange, letter.routing_key) == ("automation.dlx", "run.requested")
    assert letter.headers is not None
    assert letter.headers[REASON_HEADER] == "failed after 2 attempts: timed out after 5s"
    assert letter.headers["x-original-exchange"] == "automation.commands"
    assert letter.headers["x-original-routing-key"] == "run.requested"
    assert letter.headers["x-original-queue"] == "executor.runs"
    assert letter.headers["x-dead-lettered-by"] == "executor"
    assert isinstance(letter.event.data, dict)
    assert letter.event.data["attempt"] == 3, "requeueing the dead letter runs the job once more"
    again = plan_outcome(
        request,
        RunOutcome(status="timed_out", error="timed out after 5s"),
        started_at=NOW,
        finished_at=NOW,
        routes=ROUTES,
    )
    assert again.messages[1].event.id == letter.event.id, "a re-recorded ending is the same message"


def test_success_has_no_followup() -> None:
    ending = plan_outcome(
        _request(retries=3),
        RunOutcome(status="succeeded", exit_code=0),
        started_at=NOW,
        finished_at=NOW,
        routes=ROUTES,
    )
    assert [m.event.type for m in ending.messages] == ["execution.succeeded"]
    assert ending.values["status"] == "succeeded"


def test_a_lost_attempt_is_retried_then_poison() -> None:
    request = _request(retries=5)
    lost = plan_lost(request, started_at=NOW, finished_at=NOW, lost_total=1, max_lost=2, routes=ROUTES, rand=_top)
    assert lost.status == "lost"
    assert lost.will_retry
    assert lost.values["lost_count"] == 1
    assert lost.values["lost_at"] == NOW
    assert isinstance(lost.messages[0].event.data, dict)
    assert lost.messages[0].event.data["error"] == "executor lost"
    poison = plan_lost(request, started_at=NOW, finished_at=NOW, lost_total=2, max_lost=2, routes=ROUTES)
    assert poison.dead_letter == "poison"
    assert not poison.will_retry
    letter = poison.messages[1]
    assert letter.headers is not None
    assert letter.headers[REASON_HEADER] == "poison: killed its executor 2 times"


def test_a_cancelled_attempt_says_why_and_nothing_follows() -> None:
    ending = plan_cancelled(_request(retries=3), finished_at=NOW, reason="operator asked")
    [event] = ending.messages
    assert event.event.type == "execution.cancelled"
    assert isinstance(event.event.data, dict)
    assert event.event.data["reason"] == "operator asked"
    assert ending.values["status"] == "cancelled"
    assert ending.values["error"] == "operator asked"
    assert not ending.will_retry


def test_a_job_can_only_lower_the_executors_limits() -> None:
    settings = ExecutorSettings(env="development", executor_max_open_files=512, executor_max_cpu_seconds=60)
    assert effective_settings(settings, None) is settings
    tighter = effective_settings(
        settings, ResourceLimits(open_files=64, cpu_seconds=600, address_space_bytes=256 * 1024 * 1024)
    )
    assert tighter.executor_max_open_files == 64
    assert tighter.executor_max_cpu_seconds == 60, "a job cannot loosen a limit"
    assert tighter.executor_max_address_space_bytes == 256 * 1024 * 1024, "nor is it stuck without one"
    assert tighter.executor_max_file_size_bytes is None
    assert effective_settings(settings, ResourceLimits(open_files=4096)) is settings


def test_the_sandbox_argv_is_read_only_private_and_offline_unless_asked() -> None:
    argv = wrap_argv(["echo", "hi"], workdir="/srv/executions/run-1", network=False, cwd="/srv/executions/run-1/sub")
    assert argv[-3:] == ["--", "echo", "hi"]
    joined = " ".join(argv)
    assert "--ro-bind / /" in joined
    assert "--bind /srv/executions/run-1 /srv/executions/run-1" in joined
    assert "--chdir /srv/executions/run-1/sub" in joined
    for private in ("/tmp", "/run", "/dev/shm"):
        assert f"--tmpfs {private}" in joined
    assert "--unshare-net" in argv
    assert "--die-with-parent" in argv
    assert "--unshare-net" not in wrap_argv(["true"], workdir="/w", network=True)
    assert joined.index("--tmpfs /tmp") < joined.index("--bind /srv/executions/run-1"), (
        "the workdir is mounted over the tmpfs"
    )


def test_a_step_asking_for_a_sandbox_that_is_missing_is_refused() -> None:
    steps = [
        StepSpec(name="plain", type="shell", config={"command": ["true"]}),
        StepSpec(name="boxed", type="shell", config={"command": ["true"], "sandbox": "bubblewrap"}),
    ]
    assert sandbox_refusal(steps, SandboxStatus(None)) is None
    refusal = sandbox_refusal(steps, SandboxStatus("bubblewrap is not installed"))
    assert refusal is not None
    assert refusal.startswith("step boxed: asks for the bubblewrap sandbox")
    assert "bubblewrap is not installed" in refusal
    assert sandbox_refusal(steps[:1], SandboxStatus("missing")) is None
    offline = [StepSpec(name="offline", type="shell", config={"command": ["true"], "network": False})]
    assert sandbox_refusal(offline, SandboxStatus("missing")) is not None


def test_the_dead_letter_id_is_stable_per_attempt() -> None:
    one, two = _request(), _request()
    assert uuid.UUID(plan_cancelled(one, finished_at=NOW, reason="r").messages[0].event.id)
    ids = {
        plan_outcome(r, RunOutcome(status="failed", error="e"), started_at=NOW, finished_at=NOW, routes=ROUTES)
        .messages[1]
        .event.id
        for r in (one, two)
    }
    assert len(ids) == 2
