"""The consumer runner's check of ``data``: platform types by their contract model (parsed once, handed to
the handler), anything naming another schema of ours by the JSON Schema; failures name the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from automation_contracts import CloudEvent, ContractError, JobChanged, JobDeleted, build_event, urn
from automation_messaging.consumer import Delivery, check_data, data_refused


def job_deleted(**overrides: object) -> CloudEvent:
    data: dict[str, object] = {
        "job_id": str(uuid.uuid4()),
        "account_id": str(uuid.uuid4()),
        "version": 2,
        "deleted_at": datetime.now(UTC).isoformat(),
    }
    return build_event("job.deleted", source="/tests/checks", data={**data, **overrides})


def with_attributes(event: CloudEvent, **attributes: Any) -> CloudEvent:
    """The event as another producer might send it (a different or no ``dataschema``)."""
    return CloudEvent.from_dict({**event.model_dump(), **attributes})


def delivery(model: JobDeleted | None) -> Delivery:
    message = cast(AbstractIncomingMessage, object())  # Delivery.parse never reads the message
    return Delivery(message, "q", "job.deleted", 0, model)


def test_a_platform_type_is_parsed_into_its_model() -> None:
    event = job_deleted()

    model = check_data(event)

    assert isinstance(model, JobDeleted)
    assert str(model.job_id) == event.data["job_id"]


def test_a_platform_type_without_dataschema_is_still_checked() -> None:
    event = with_attributes(job_deleted(version=0), dataschema=None)

    with pytest.raises(ContractError) as error:
        check_data(event)

    assert str(error.value).startswith("data.version: ")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"version": 0}, "data.version"),
        ({"version": "2"}, "data.version"),
        ({"job_id": "not-a-uuid"}, "data.job_id"),
        ({"surprise": True}, "data.surprise"),
    ],
)
def test_invalid_data_names_the_field_at_fault(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ContractError) as error:
        check_data(job_deleted(**overrides))

    assert error.value.path == field
    assert error.value.reason


def test_a_missing_field_is_named() -> None:
    event = job_deleted()
    data = dict(event.data)
    del data["deleted_at"]

    with pytest.raises(ContractError) as error:
        check_data(with_attributes(event, data=data))

    assert error.value.path == "data.deleted_at"


def test_a_platform_type_naming_another_schema_is_refused() -> None:
    event = with_attributes(job_deleted(), dataschema=urn("job.created"))

    with pytest.raises(ContractError) as error:
        check_data(event)

    assert error.value.path == "dataschema"


def test_an_external_type_naming_one_of_our_schemas_is_checked_by_that_schema() -> None:
    event = build_event("inventory.synced", source="/tests/checks", data={"version": 1}, id="e-1")
    named = with_attributes(event, dataschema=urn("job.deleted"))

    with pytest.raises(ContractError) as error:
        check_data(named)

    assert error.value.path.startswith("data")
    assert check_data(event) is None  # no schema of ours: nothing to check here


def test_delivery_parse_reuses_the_runners_model() -> None:
    event = job_deleted()
    model = check_data(event)
    assert isinstance(model, JobDeleted)

    assert delivery(model).parse(event, JobDeleted) is model


def test_delivery_parse_parses_when_the_runner_did_not() -> None:
    event = job_deleted()

    parsed = delivery(None).parse(event, JobDeleted)

    assert isinstance(parsed, JobDeleted)
    assert parsed.version == 2
    with pytest.raises(ContractError):  # another model than the runner's: parsed, and refused here
        delivery(parsed).parse(event, JobChanged)


def test_a_data_error_is_found_wherever_it_stands_in_the_chain() -> None:
    refused = asyncpg.DataError("value out of int32 range")
    assert data_refused(refused) is refused
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = refused
    assert data_refused(wrapped) is refused
    during = RuntimeError("raised while handling it")
    during.__context__ = wrapped
    assert data_refused(during) is refused

    class Wrapper(Exception):  # SQLAlchemy's DBAPIError keeps the driver's error as ``orig``
        orig = refused

    assert data_refused(Wrapper()) is refused
    assert data_refused(RuntimeError("the database is down")) is None
    assert data_refused(asyncpg.PostgresConnectionError("gone")) is None
