"""The scheduling fields of a job definition: window, DST policies, jitter, misfire, overlap, max runs and
event triggers; every refusal names its field."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from automation_contracts import JobChanged, build_event, validate_event
from automation_core.errors import InvalidInput
from automation_job_api.domain.jobs import JobDefinition, check_definition

BASE: dict[str, Any] = {
    "name": "inventory-sync",
    "schedule": "*/15 * * * *",
    "timezone": "Europe/Berlin",
    "steps": [{"name": "s", "type": "shell", "config": {"command": ["true"]}}],
}
SOON = datetime.now(UTC) + timedelta(days=1)


def body(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document.update(changes)
    return document


def refused_field(document: dict[str, Any]) -> str:
    """The field check_definition names (the model must accept the document)."""
    definition = JobDefinition.model_validate(document)
    with pytest.raises(InvalidInput) as caught:
        check_definition(definition)
    assert caught.value.field is not None
    assert caught.value.detail.startswith(f"{caught.value.field}: ")
    return caught.value.field


def model_refused(document: dict[str, Any]) -> str:
    """The dotted location of the model's first error."""
    with pytest.raises(ValidationError) as caught:
        JobDefinition.model_validate(document)
    return ".".join(str(part) for part in caught.value.errors()[0]["loc"])


def test_defaults_keep_todays_behaviour() -> None:
    definition = JobDefinition.model_validate(body())
    check_definition(definition)
    spec = definition.to_spec()
    assert (spec.start_at, spec.end_at, spec.dst_gap, spec.dst_overlap) == (None, None, "shift", "first")
    assert (spec.jitter_seconds, spec.misfire_policy, spec.misfire_cap) == (0, "run_once", 100)
    assert (spec.starting_deadline_seconds, spec.overlap_policy, spec.max_runs, spec.triggers) == (
        None,
        "allow",
        None,
        [],
    )


def test_every_field_set_reaches_the_contract() -> None:
    document = body(
        start_at=SOON.isoformat(),
        end_at=(SOON + timedelta(days=30)).isoformat(),
        dst_gap="skip",
        dst_overlap="both",
        jitter_seconds=12.5,
        misfire_policy="run_all",
        misfire_cap=24,
        starting_deadline_seconds=300,
        overlap_policy="replace",
        max_runs=10,
        triggers=[
            {
                "type": "inventory.*",
                "where": [
                    {"path": "data.site", "op": "in", "value": ["fra1", "ams2"]},
                    {"path": "data.items.0.sku", "op": "exists"},
                    {"path": "data.dry_run", "op": "ne", "value": True},
                ],
                "max_per_minute": 5,
            },
            {"type": "#"},
        ],
    )
    definition = JobDefinition.model_validate(document)
    check_definition(definition)
    spec = definition.to_spec()
    assert spec.start_at == SOON
    assert (spec.misfire_policy, spec.misfire_cap, spec.overlap_policy, spec.max_runs) == ("run_all", 24, "replace", 10)
    assert spec.triggers[0].where[0].value == ["fra1", "ams2"]
    assert spec.triggers[1].type == "#"
    event = build_event(
        "job.created",
        source="/t",
        data=JobChanged(
            job_id=uuid.uuid4(),
            account_id=uuid.uuid4(),
            version=1,
            changed_at=SOON,
            job=spec,
        ),
    )
    validate_event(event)  # the message schema agrees with the model


def test_a_one_off_with_a_window_and_an_event_only_job_are_accepted() -> None:
    check_definition(JobDefinition.model_validate(body(schedule=f"@at {SOON.isoformat()}", end_at=None)))
    check_definition(JobDefinition.model_validate(body(schedule=None, triggers=[{"type": "orders.created"}])))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"start_at": SOON.isoformat(), "end_at": (SOON - timedelta(hours=1)).isoformat()}, "end_at"),
        ({"schedule": None, "start_at": SOON.isoformat(), "end_at": (SOON - timedelta(hours=1)).isoformat()}, "end_at"),
        ({"schedule": "@yearly", "end_at": (SOON + timedelta(days=1)).isoformat()}, "end_at"),
        ({"schedule": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, "schedule"),
        ({"schedule": SOON.isoformat(), "start_at": (SOON + timedelta(hours=1)).isoformat()}, "start_at"),
        ({"schedule": "0 0 30 2 *"}, "schedule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"triggers": [{"type": "inventory..synced"}]}, "triggers.0.type"),
        ({"triggers": [{"type": "a"}, {"type": "inventory synced"}]}, "triggers.1.type"),
        ({"triggers": [{"type": "execution.*"}]}, "triggers.0.type"),
        ({"triggers": [{"type": "job.created"}]}, "triggers.0.type"),
        (
            {"triggers": [{"type": "a.b", "where": [{"path": "site", "op": "eq", "value": 1}]}]},
            "triggers.0.where.0.path",
        ),
        ({"triggers": [{"type": "a", "where": [{"path": "data", "op": "exists"}]}]}, "triggers.0.where.0.path"),
        ({"triggers": [{"type": "a", "where": [{"path": "data..x", "op": "exists"}]}]}, "triggers.0.where.0.path"),
        (
            {
                "triggers": [
                    {
                        "type": "a",
                        "where": [
                            {"path": "data.x", "op": "eq", "value": 1},
                            {"path": "data.y", "op": "in", "value": "z"},
                        ],
                    }
                ]
            },
            "triggers.0.where.1.value",
        ),
        (
            {"triggers": [{"type": "a", "where": [{"path": "data.x", "op": "in", "value": []}]}]},
            "triggers.0.where.0.value",
        ),
        (
            {"triggers": [{"type": "a", "where": [{"path": "data.x", "op": "exists", "value": 3}]}]},
            "triggers.0.where.0.value",
        ),
    ],
)
def test_refusals_name_the_field(changes: dict[str, Any], field: str) -> None:
    assert refused_field(body(**changes)) == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"misfire_cap": 0}, "misfire_cap"),
        ({"misfire_cap": 1001}, "misfire_cap"),
        ({"misfire_policy": "run_twice"}, "misfire_policy"),
        ({"overlap_policy": "queue"}, "overlap_policy"),
        ({"dst_gap": "jump"}, "dst_gap"),
        ({"dst_overlap": "second"}, "dst_overlap"),
        ({"jitter_seconds": -1}, "jitter_seconds"),
        ({"jitter_seconds": 3600.5}, "jitter_seconds"),
        ({"starting_deadline_seconds": 0}, "starting_deadline_seconds"),
        ({"max_runs": 0}, "max_runs"),
        ({"start_at": "2026-12-01T00:00:00"}, "start_at"),
        ({"triggers": [{"type": "a", "max_per_minute": 0}]}, "triggers.0.max_per_minute"),
        ({"triggers": [{"type": "a", "where": [{"path": "data.x", "op": "like"}]}]}, "triggers.0.where.0.op"),
        ({"triggers": [{"where": []}]}, "triggers.0.type"),
    ],
)
def test_out_of_range_values_are_model_errors_naming_the_field(changes: dict[str, Any], field: str) -> None:
    assert model_refused(body(**changes)) == field
