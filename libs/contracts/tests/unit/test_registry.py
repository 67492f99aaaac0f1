"""build_event, validate_event, parse_data, dataschema_for, schemas_dir and ContractError."""

from __future__ import annotations

import json
import pickle
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from automation_contracts import (
    EVENT_MODELS,
    BrowserTask,
    CancelExecution,
    CloudEvent,
    ContractError,
    GotoAction,
    JobChanged,
    RunRequested,
    build_event,
    dataschema_for,
    parse_data,
    schemas_dir,
    validate_event,
)

EXAMPLES = schemas_dir() / "examples"


def example(event_type: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.v1" / f"{name}.json").read_text(encoding="utf-8"))
    return data


def event_with(event_type: str, data: Any, **attributes: Any) -> CloudEvent:
    return CloudEvent.from_dict(
        {"specversion": "1.0", "id": "1", "source": "/tests", "type": event_type, "data": data, **attributes}
    )


def test_build_event_fills_id_time_and_dataschema() -> None:
    cancel = CancelExecution(execution_id=uuid.uuid4(), reason="by hand", requested_at=datetime.now(UTC))
    before = datetime.now(UTC)

    event = build_event("execution.cancel", source="/job-api", data=cancel, subject="s-1", traceid="abc")

    assert uuid.UUID(event.id).version == 4
    assert event.time is not None
    assert before <= event.time <= datetime.now(UTC)
    assert event.dataschema == "urn:automation:schema:execution.cancel:v1"
    assert event.datacontenttype == "application/json"
    assert event.subject == "s-1"
    assert event.extensions == {"traceid": "abc"}
    assert event.data == cancel.model_dump(mode="json")
    validate_event(event)
    assert parse_data(event, CancelExecution) == cancel


def test_build_event_keeps_given_id_and_time_and_leaves_external_types_schemaless() -> None:
    when = datetime(2024, 5, 1, 2, 0, tzinfo=UTC) + timedelta(microseconds=5)

    event = build_event("inventory.synced", source="urn:service:inventory", data={"n": 1}, id="inv-1", time=when)

    assert (event.id, event.time, event.dataschema) == ("inv-1", when, None)
    validate_event(event)  # nothing of ours to check


def test_build_event_refuses_a_core_attribute_as_extension() -> None:
    with pytest.raises(ContractError, match="core attribute"):
        build_event("inventory.synced", source="/x", data={}, dataschema="urn:other")


def test_build_event_refuses_a_bad_source() -> None:
    with pytest.raises(ContractError) as raised:
        build_event("inventory.synced", source="not a uri reference", data={})

    assert raised.value.path == "source"


def test_dataschema_for() -> None:
    assert dataschema_for("run.requested") == "urn:automation:schema:run.requested:v1"
    assert dataschema_for("inventory.synced") is None
    assert dataschema_for("cloudevent") is None, "building blocks are not message types"


def test_bad_step_name_is_reported_at_its_path() -> None:
    event = build_event("job.created", source="/job-api", data=example("job.created", "invalid-bad-step-name"))

    with pytest.raises(ContractError) as by_schema:
        validate_event(event)
    with pytest.raises(ContractError) as by_model:
        parse_data(event, JobChanged)

    assert by_schema.value.path == by_model.value.path == "data.job.steps.0.name"
    assert str(by_schema.value).startswith("data.job.steps.0.name: 'fetch data' does not match")


def test_missing_field_is_reported_at_the_field() -> None:
    event = build_event("run.requested", source="/x", data=example("run.requested", "invalid-missing-execution-id"))

    with pytest.raises(ContractError) as raised:
        validate_event(event)

    assert raised.value.path == "data.execution_id"
    assert raised.value.reason == "'execution_id' is a required property"


def test_unknown_property_is_reported_at_the_property() -> None:
    event = build_event("execution.cancel", source="/x", data=example("execution.cancel", "invalid-unknown-property"))

    with pytest.raises(ContractError) as raised:
        validate_event(event)

    assert raised.value.path == "data.force"


def test_browser_action_errors_name_the_action_field() -> None:
    event = build_event("browser.task", source="/x", data=example("browser.task", "invalid-goto-relative-url"))

    with pytest.raises(ContractError) as by_schema:
        validate_event(event)
    with pytest.raises(ContractError) as by_model:
        parse_data(event, BrowserTask)

    assert by_schema.value.path == by_model.value.path == "data.actions.0.url"


def test_unknown_action_type_is_reported_at_type() -> None:
    event = build_event("browser.task", source="/x", data=example("browser.task", "invalid-unknown-action-type"))

    with pytest.raises(ContractError) as by_model:
        parse_data(event, BrowserTask)

    assert by_model.value.path == "data.actions.1.type"


def test_an_action_without_a_type_is_told_the_field_is_required() -> None:
    event = build_event("browser.task", source="/x", data=example("browser.task", "invalid-unknown-action-type"))
    event.data["actions"][1] = {"action": "click", "selector": "a"}  # "action" where "type" belongs

    with pytest.raises(ContractError) as by_model:
        parse_data(event, BrowserTask)

    assert by_model.value.path == "data.actions.1.type"
    assert by_model.value.reason == "Field required: 'type' says which kind of item this is"


def test_parse_data_gives_typed_models() -> None:
    event = build_event("browser.task", source="/x", data=example("browser.task", "valid-minimal"))

    task = parse_data(event, BrowserTask)

    assert task.timeout_seconds == 30
    assert isinstance(task.actions[0], GotoAction)
    assert task.actions[0].wait_until == "load"


def test_missing_data_is_reported_as_data() -> None:
    event = event_with("execution.cancel", None, dataschema=dataschema_for("execution.cancel"))

    with pytest.raises(ContractError) as by_schema:
        validate_event(event)
    with pytest.raises(ContractError) as by_model:
        parse_data(event, CancelExecution)

    assert by_schema.value.path == by_model.value.path == "data"


def test_our_type_without_dataschema_is_checked_against_its_schema() -> None:
    event = event_with("execution.cancel", {"execution_id": "nope"})

    with pytest.raises(ContractError):
        validate_event(event)


def test_dataschema_must_be_the_schema_of_our_type() -> None:
    event = event_with("job.created", example("job.deleted", "valid-deleted"), dataschema=dataschema_for("job.deleted"))

    with pytest.raises(ContractError) as raised:
        validate_event(event)

    assert raised.value.path == "dataschema"


def test_our_type_cannot_name_a_foreign_schema() -> None:
    event = event_with("execution.cancel", {}, dataschema="https://schemas.example.com/cancel/v1")

    with pytest.raises(ContractError) as raised:
        validate_event(event)

    assert raised.value.path == "dataschema"


def test_unknown_automation_urn_is_an_error() -> None:
    event = event_with("inventory.synced", {}, dataschema="urn:automation:schema:inventory.synced:v1")

    with pytest.raises(ContractError) as raised:
        validate_event(event)

    assert raised.value.path == "dataschema"


def test_external_type_with_our_schema_is_checked() -> None:
    event = event_with("audit.job", {"name": ""}, dataschema="urn:automation:schema:job-spec:v1")

    with pytest.raises(ContractError) as raised:
        validate_event(event)

    assert raised.value.path.startswith("data.")


def test_external_type_with_foreign_schema_is_left_to_the_gateway() -> None:
    event = event_with("inventory.synced", [1, 2], dataschema="https://schemas.example.com/inventory/v1")

    validate_event(event)


def test_run_requested_carries_its_triggering_event() -> None:
    event = build_event("run.requested", source="/scheduler", data=example("run.requested", "valid-event-triggered"))

    run = parse_data(event, RunRequested)

    assert run.event is not None
    assert run.event.type == "inventory.synced"
    validate_event(CloudEvent.from_json_bytes(build_event("run.requested", source="/s", data=run).to_json_bytes()))


def test_every_type_has_a_model() -> None:
    assert EVENT_MODELS["execution.timed_out"] is EVENT_MODELS["execution.failed"]
    assert EVENT_MODELS["job.updated"] is EVENT_MODELS["job.created"]
    assert len(EVENT_MODELS) == 13


def test_contract_error_reads_well_and_pickles() -> None:
    error = ContractError("Field required", "data.attempt")

    assert str(error) == "data.attempt: Field required"
    assert str(ContractError("not JSON")) == "not JSON"
    again = pickle.loads(pickle.dumps(error))
    assert (again.reason, again.path) == ("Field required", "data.attempt")


def test_schemas_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOMATION_SCHEMAS_DIR", str(tmp_path))

    assert schemas_dir() == tmp_path


def test_schemas_dir_finds_the_checkout_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOMATION_SCHEMAS_DIR", raising=False)

    found = schemas_dir()

    assert found.name == "proto-schemas"
    assert (found / "asyncapi.yaml").is_file()
