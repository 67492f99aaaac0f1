"""The executor's messages honour the contracts in proto-schemas/."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from automation_contracts import RunRequested, validate_event
from automation_executor.domain.outcome import RunOutcome
from automation_executor.domain.protocol import LogMessage, ResultMessage, StepMessage, parse_child_line
from automation_executor.events import outcome_event, retry_request, started_event
from automation_executor.testing import run_request_data


def _request() -> RunRequested:
    data = run_request_data([{"name": "s", "type": "shell", "config": {"command": ["true"]}}], retries=2)
    return RunRequested.model_validate(json.loads(json.dumps(data)))


def test_started_and_outcome_events_validate_and_have_stable_ids() -> None:
    request = _request()
    now = datetime.now(UTC)
    started = started_event(request, started_at=now, worker="w", run_number=0)
    validate_event(started)
    assert started.id == started_event(request, started_at=now, worker="w", run_number=0).id
    assert started.id != started_event(request, started_at=now, worker="w", run_number=1).id
    assert started.source == "/automation/executor"
    assert started.subject == str(request.execution_id)
    assert started.data["trigger"] == "manual"
    assert started.data["scheduled_for"] is None
    ok = outcome_event(
        request,
        RunOutcome(status="succeeded", exit_code=0, outputs={"s": {"exit_code": 0}}),
        started_at=now,
        finished_at=now,
        next_attempt_at=None,
    )
    validate_event(ok)
    assert ok.type == "execution.succeeded"
    assert ok.data["result"] == {"s": {"exit_code": 0}}
    for status in ("failed", "timed_out"):
        bad = outcome_event(
            request,
            RunOutcome(status=status, error=None),
            started_at=now,
            finished_at=now,
            next_attempt_at=now + timedelta(seconds=5),
        )
        validate_event(bad)
        assert bad.type == f"execution.{status}"
        assert bad.data["will_retry"] is True
        assert bad.data["error"]


def test_started_names_the_trigger_and_nominal_time_of_a_scheduled_run() -> None:
    nominal = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    data = run_request_data(
        [{"name": "s", "type": "shell", "config": {"command": ["true"]}}],
        trigger="schedule",
        scheduled_for=nominal,
        parameters={"site": "fra1"},
    )
    request = RunRequested.model_validate(json.loads(json.dumps(data)))
    started = started_event(request, started_at=datetime.now(UTC), worker="w", run_number=0)
    validate_event(started)
    assert started.data["trigger"] == "schedule"
    assert datetime.fromisoformat(started.data["scheduled_for"]) == nominal
    # what the run was asked to be, for job-api's read model of a run it did not queue
    assert started.data["job_version"] == request.job_version
    assert started.data["parameters"] == {"site": "fra1"}
    assert datetime.fromisoformat(started.data["requested_at"]) == request.requested_at
    retry = retry_request(request, next_attempt_at=datetime.now(UTC))
    assert retry.data["trigger"] == "schedule"
    assert retry.data["scheduled_for"] == started.data["scheduled_for"]


def test_the_retry_request_is_the_next_attempt_of_the_same_execution() -> None:
    request = _request()
    due = datetime.now(UTC) + timedelta(seconds=10)
    retry = retry_request(request, next_attempt_at=due)
    validate_event(retry)
    assert retry.type == "run.requested"
    assert retry.data["attempt"] == 2
    assert retry.data["execution_id"] == str(request.execution_id)
    assert retry.data["job"] == json.loads(request.job.model_dump_json())
    assert datetime.fromisoformat(retry.data["requested_at"]) == due


def test_child_protocol_lines_parse() -> None:
    log = parse_child_line(b'{"type":"log","ts":"2026-01-01T00:00:00Z","stream":"stdout","step":"a","text":"hi"}')
    assert isinstance(log, LogMessage)
    step = parse_child_line(b'{"type":"step","name":"a","status":"failed","exit_code":3,"error":"x"}')
    assert isinstance(step, StepMessage)
    result = parse_child_line(b'{"type":"result","status":"succeeded","outputs":{"a":1}}')
    assert isinstance(result, ResultMessage)


def test_an_outcome_error_holds_no_nul_and_its_event_says_so() -> None:
    # A handler's exception or a child's last words may quote a NUL: the attempt row's error is text.
    outcome = RunOutcome(status="failed", error="step s: boom \x00 here")
    assert outcome.error == "step s: boom \ufffd here"
    now = datetime.now(UTC)
    event = outcome_event(_request(), outcome, started_at=now, finished_at=now, next_attempt_at=None)
    assert event.data["error"] == "step s: boom \ufffd here"
