"""Job events in, run.requested out: the message mapping without a broker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from automation_contracts import (
    CancelExecution,
    CloudEvent,
    ContractError,
    RunRequested,
    build_event,
    parse_data,
    validate_event,
)
from automation_messaging import DeadLetter
from automation_messaging.topology import COMMANDS, CONTROL
from automation_scheduler.consumers import JobEventsHandler, job_version_from
from automation_scheduler.db.repository import DueRow
from automation_scheduler.domain.compiled import compile_job
from automation_scheduler.domain.firing import execution_id_for
from automation_scheduler.fire_loop import scheduled_run
from automation_scheduler.messages import SOURCE, cancel_execution, render_run, run_template

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
JOB = uuid.UUID("0b9b6f0e-8a7c-4c1e-9a51-0f6b2b7c1d11")
ACCOUNT = uuid.UUID("7a3f5c2e-1d4b-4e6a-8f9c-2b1a0d3e4f56")
SPEC = {
    "name": "nightly",
    "schedule": "@every 1s",
    "timezone": "UTC",
    "enabled": True,
    "timeout_seconds": 60,
    "retries": 2,
    "retry_backoff": {"base_seconds": 1, "max_seconds": 10},
    "priority": 5,
    "parameters": {"type": "object", "properties": {"site": {"type": "string", "default": "fra1"}}},
    "steps": [{"name": "s", "type": "shell", "config": {"command": ["true"]}}],
}


def changed(event_type: str = "job.created", version: int = 1) -> dict[str, object]:
    return {
        "job_id": str(JOB),
        "account_id": str(ACCOUNT),
        "version": version,
        "changed_at": T0.isoformat(),
        "job": SPEC,
    }


def test_created_and_updated_carry_the_spec() -> None:
    for event_type in ("job.created", "job.updated"):
        change = job_version_from(build_event(event_type, source="/t", data=changed(version=4)))
        assert change is not None
        assert (change.job_id, change.account_id, change.version, change.changed_at) == (JOB, ACCOUNT, 4, T0)
        assert change.spec is not None
        assert change.spec.schedule == "@every 1s"


def test_deleted_carries_no_spec() -> None:
    event = build_event(
        "job.deleted",
        source="/t",
        data={"job_id": str(JOB), "account_id": str(ACCOUNT), "version": 9, "deleted_at": T0.isoformat()},
    )
    change = job_version_from(event)
    assert change is not None
    assert change.spec is None
    assert change.version == 9


def test_other_job_types_are_not_handled() -> None:
    assert job_version_from(build_event("job.archived", source="/t", data={"x": 1})) is None


def test_data_that_breaks_the_model_is_a_contract_error() -> None:
    with pytest.raises(ContractError):
        job_version_from(build_event("job.created", source="/t", data={"job_id": "nope"}))


class RefusingService:
    """A fake that must not be reached."""

    async def apply(self, change: object) -> object:
        raise AssertionError("not reached")


async def test_the_handler_dead_letters_invalid_data() -> None:
    handler = JobEventsHandler(RefusingService())  # type: ignore[arg-type]
    event = build_event("job.updated", source="/t", data={"job_id": str(JOB)})
    with pytest.raises(DeadLetter, match=r"invalid job\.updated"):
        await handler(event, None)  # type: ignore[arg-type]


def test_run_requested_is_a_valid_contract_message() -> None:
    row = DueRow(JOB, ACCOUNT, 3, "@every 1s", "UTC", T0, T0)
    job = compile_job(JOB, 3, SPEC, T0)
    nominal = datetime(2026, 11, 23, 12, 0, 5, 250000, tzinfo=UTC)
    event, exchange, routing_key = scheduled_run(row, job, nominal, nominal)
    assert (exchange, routing_key) == (COMMANDS, "run.requested")
    validate_event(event)
    assert event.type == "run.requested"
    assert event.source == SOURCE
    assert event.id == str(execution_id_for(JOB, nominal))
    data = parse_data(event, RunRequested)
    assert data.execution_id == execution_id_for(JOB, nominal)
    assert (data.trigger, data.attempt, data.job_version) == ("schedule", 1, 3)
    assert data.scheduled_for == nominal
    assert data.parameters == {"site": "fra1"}
    assert data.job.name == "nightly"


def test_cancel_is_a_valid_control_message_for_the_fanout_exchange() -> None:
    execution_id = execution_id_for(JOB, T0)
    event, exchange, routing_key = cancel_execution(execution_id, "replaced", T0)
    validate_event(event)
    assert (event.type, event.source, event.subject) == ("execution.cancel", SOURCE, str(execution_id))
    assert (exchange, routing_key) == (CONTROL, "execution.cancel")
    cancel = parse_data(event, CancelExecution)
    assert (cancel.execution_id, cancel.reason, cancel.requested_at) == (execution_id, "replaced", T0)


# --- the fire path's template ------------------------------------------------------------------------


def _slow_body(spec: dict[str, object], nominal: datetime, at: datetime) -> dict[str, object]:
    job = compile_job(JOB, 3, spec, T0)
    row = DueRow(JOB, ACCOUNT, 3, job.spec.schedule, "UTC", T0, nominal)
    event, _, _ = scheduled_run(row, job, nominal, at)
    parsed: dict[str, object] = json.loads(event.to_json_bytes())
    return parsed


@pytest.mark.parametrize(
    ("nominal", "at"),
    [
        (T0, T0),  # on time, whole seconds
        (T0, T0.replace(microsecond=1234)),  # published a little after the slot
        (T0.replace(microsecond=500_000), T0.replace(second=7, microsecond=999_999)),
    ],
)
def test_a_rendered_template_is_the_message_the_models_build(nominal: datetime, at: datetime) -> None:
    job = compile_job(JOB, 3, SPEC, T0)
    template = run_template(job_version=3, spec=job.spec, parameters=job.parameters)
    assert template is not None
    execution_id = execution_id_for(JOB, nominal)
    body = render_run(
        template, execution_id=execution_id, job_id=JOB, account_id=ACCOUNT, scheduled_for=nominal, requested_at=at
    )
    assert json.loads(body) == _slow_body(SPEC, nominal, at)
    event = CloudEvent.from_json_bytes(body)
    validate_event(event)  # the run.requested schema, as the executor checks it
    data = parse_data(event, RunRequested)
    assert (data.execution_id, data.scheduled_for, data.requested_at, event.time) == (execution_id, nominal, at, at)
    assert event.id == str(execution_id)
    assert event.subject == str(JOB)


def test_a_template_is_shared_by_jobs_and_slots_and_carries_none_of_their_ids() -> None:
    job = compile_job(JOB, 3, SPEC, T0)
    template = run_template(job_version=3, spec=job.spec, parameters=job.parameters)
    assert template is not None
    assert str(JOB) not in template
    assert str(ACCOUNT) not in template
    other, account = uuid.uuid4(), uuid.uuid4()
    body = json.loads(
        render_run(
            template, execution_id=uuid.uuid4(), job_id=other, account_id=account, scheduled_for=T0, requested_at=T0
        )
    )
    assert (body["subject"], body["data"]["job_id"], body["data"]["account_id"]) == (
        str(other),
        str(other),
        str(account),
    )


def test_a_spec_holding_the_hole_marker_gets_no_template() -> None:
    sneaky = SPEC | {"description": "\x01i\x01"}
    job = compile_job(JOB, 3, sneaky, T0)
    assert run_template(job_version=3, spec=job.spec, parameters=job.parameters) is None


def test_a_template_keeps_unicode_and_json_escapes_intact() -> None:
    spec = SPEC | {"description": 'quote " backslash \\ tab \t naïve ✓ \u2028'}
    job = compile_job(JOB, 3, spec, T0)
    template = run_template(job_version=3, spec=job.spec, parameters=job.parameters)
    assert template is not None
    body = render_run(
        template, execution_id=uuid.uuid4(), job_id=JOB, account_id=ACCOUNT, scheduled_for=T0, requested_at=T0
    )
    assert json.loads(body)["data"]["job"]["description"] == spec["description"]
