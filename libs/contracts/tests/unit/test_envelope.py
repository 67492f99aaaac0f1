"""The CloudEvent envelope: JSON round trip, absent attributes, extensions, errors."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from automation_contracts import CloudEvent, ContractError

EVENT = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/job-api",
    "type": "job.deleted",
    "time": "2024-05-03T20:00:00.120+02:00",
    "subject": "3f1c2a9e-8d4b-4e6f-9a27-5b0c1d2e3f40",
    "datacontenttype": "application/json",
    "dataschema": "urn:automation:schema:job.deleted:v1",
    "data": {"nested": {"kept": None}, "list": [1, "two", None]},
    "partitionkey": "fra1",
    "sequence": 42,
    "replayed": False,
}


def test_json_round_trip_keeps_every_attribute() -> None:
    event = CloudEvent.from_dict(EVENT)

    again = CloudEvent.from_json_bytes(event.to_json_bytes())

    assert again == event
    assert again.time == datetime(2024, 5, 3, 20, 0, 0, 120000, tzinfo=timezone(timedelta(hours=2)))
    assert again.extensions == {"partitionkey": "fra1", "sequence": 42, "replayed": False}
    assert json.loads(again.to_json_bytes())["data"] == EVENT["data"], "nulls inside data are data"


def test_absent_attributes_are_left_out_of_the_json() -> None:
    event = CloudEvent(specversion="1.0", id="1", source="urn:service:billing", type="invoice.paid", traceid=None)

    assert json.loads(event.to_json_bytes()) == {
        "specversion": "1.0",
        "id": "1",
        "source": "urn:service:billing",
        "type": "invoice.paid",
    }


def test_null_attributes_count_as_absent() -> None:
    event = CloudEvent.from_dict({**EVENT, "subject": None, "time": None, "partitionkey": None})

    assert event.subject is None
    assert "partitionkey" not in event.extensions
    assert "time" not in json.loads(event.to_json_bytes())


def test_naive_time_is_refused() -> None:
    with pytest.raises(ContractError) as raised:
        CloudEvent.from_dict({**EVENT, "time": datetime(2024, 5, 3, 18, 0)})

    assert raised.value.path == "time"


def test_aware_datetime_and_uuid_values_serialise_as_json() -> None:
    when = datetime(2024, 5, 3, 18, 0, tzinfo=UTC)
    event = CloudEvent.from_dict({**EVENT, "time": when, "data": {"at": when, "id": uuid.UUID(int=1)}})

    body = json.loads(event.to_json_bytes())

    assert body["time"] == "2024-05-03T18:00:00Z"
    assert body["data"] == {"at": "2024-05-03T18:00:00Z", "id": "00000000-0000-0000-0000-000000000001"}


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"{not json", ""),
        (b"[1, 2]", ""),
        (json.dumps({**EVENT, "specversion": "0.3"}).encode(), "specversion"),
        (json.dumps({k: v for k, v in EVENT.items() if k != "source"}).encode(), "source"),
        (json.dumps({**EVENT, "time": "2024-05-03T18:00:00"}).encode(), "time"),
        (json.dumps({**EVENT, "dataschema": "job.deleted.v1.schema.json"}).encode(), "dataschema"),
        (json.dumps({**EVENT, "Bad_Name": 1}).encode(), ""),
        (json.dumps({**EVENT, "weight": 0.5}).encode(), ""),
    ],
)
def test_from_json_bytes_names_the_attribute_at_fault(raw: bytes, path: str) -> None:
    with pytest.raises(ContractError) as raised:
        CloudEvent.from_json_bytes(raw)

    assert raised.value.path == path
    assert raised.value.reason


def test_data_and_data_base64_exclude_each_other() -> None:
    with pytest.raises(ContractError, match="mutually exclusive"):
        CloudEvent.from_dict({**EVENT, "data_base64": "SGVsbG8="})


def test_from_dict_refuses_what_is_not_an_object() -> None:
    with pytest.raises(ContractError) as raised:
        CloudEvent.from_dict(["not", "an", "object"])  # type: ignore[arg-type]

    assert raised.value.path == ""


def test_events_are_immutable() -> None:
    event = CloudEvent.from_dict(EVENT)

    with pytest.raises(ValueError, match="frozen"):
        event.id = "other"  # type: ignore[misc]
