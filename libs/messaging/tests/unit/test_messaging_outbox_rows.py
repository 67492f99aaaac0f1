"""Outbox rows: optional AMQP headers and priority, stored so the relay can publish them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from automation_contracts import CloudEvent, build_event
from automation_messaging.outbox import PRIORITY_KEY, outbox_row, split_priority
from automation_messaging.topology import EXECUTOR_RUNS, WORK_QUEUES, work_queue_arguments


def _event() -> CloudEvent:
    data = {"job_id": str(uuid.uuid4()), "account_id": str(uuid.uuid4()), "version": 1}
    return build_event("job.deleted", source="/tests", data={**data, "deleted_at": datetime.now(UTC).isoformat()})


def test_a_row_without_extras_is_as_before() -> None:
    event = _event()
    row = outbox_row(event, exchange="automation.events")
    assert row["routing_key"] == "job.deleted"
    assert PRIORITY_KEY not in row["headers"]
    assert split_priority(row["headers"]) == (row["headers"], None)


def test_headers_and_priority_are_kept_apart() -> None:
    row = outbox_row(_event(), exchange="automation.dlx", headers={"x-dead-letter-reason": "boom"}, priority=7)
    assert row["headers"]["x-dead-letter-reason"] == "boom"
    headers, priority = split_priority(row["headers"])
    assert priority == 7
    assert headers["x-dead-letter-reason"] == "boom"
    assert PRIORITY_KEY not in headers
    assert PRIORITY_KEY in row["headers"], "split_priority must not change the stored row"


def test_priority_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="priority"):
        outbox_row(_event(), exchange="automation.events", priority=256)


def test_a_non_integer_priority_is_ignored() -> None:
    assert split_priority({PRIORITY_KEY: "high"}) == ({}, None)
    assert split_priority({PRIORITY_KEY: True}) == ({}, None)


def test_executor_runs_has_priorities_only_as_a_classic_queue() -> None:
    spec = next(s for s in WORK_QUEUES if s.name == EXECUTOR_RUNS)
    assert work_queue_arguments("classic", 5, spec)["x-max-priority"] == 9
    assert "x-max-priority" not in work_queue_arguments("quorum", 5, spec)
