"""Job definitions: defaults, per-type step configs, and errors that name the field at fault."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from automation_contracts import JobChanged, build_event, validate_event
from automation_core.errors import InvalidInput
from automation_job_api.domain.jobs import JobDefinition, check_definition

ARCHITECTURE_EXAMPLE: dict[str, Any] = {
    "name": "nightly-inventory",
    "description": "Pull inventory and post a summary",
    "schedule": "0 2 * * 1-5",
    "timezone": "Europe/Berlin",
    "enabled": True,
    "timeout_seconds": 300,
    "retries": 3,
    "retry_backoff": {"base_seconds": 2, "max_seconds": 300},
    "priority": 5,
    "parameters": {"type": "object", "properties": {"site": {"type": "string", "default": "fra1"}}},
    "steps": [
        {
            "name": "fetch",
            "type": "http",
            "config": {
                "method": "GET",
                "url": "https://inventory.internal/api/${{ parameters.site }}",
                "expected_status": [200],
            },
        },
        {"name": "report", "type": "shell", "config": {"command": ["echo", "${{ steps.fetch.output.status }}"]}},
    ],
}


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(ARCHITECTURE_EXAMPLE)
    body.update(changes)
    return body


def _step(index: int, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(ARCHITECTURE_EXAMPLE)
    body["steps"][index].update(changes)
    return body


def _config(index: int, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(ARCHITECTURE_EXAMPLE)
    body["steps"][index]["config"].update(changes)
    return body


def _field_of(body: dict[str, Any]) -> str:
    definition = JobDefinition.model_validate(body)
    with pytest.raises(InvalidInput) as caught:
        check_definition(definition)
    assert caught.value.field is not None
    assert caught.value.field in caught.value.detail
    return caught.value.field


def test_the_architecture_example_is_accepted_with_templates_kept_as_text() -> None:
    definition = JobDefinition.model_validate(ARCHITECTURE_EXAMPLE)
    check_definition(definition)
    dumped = definition.model_dump(mode="json")
    assert dumped["steps"][0]["config"]["url"] == "https://inventory.internal/api/${{ parameters.site }}"
    assert dumped["steps"][1]["config"] == {"command": ["echo", "${{ steps.fetch.output.status }}"]}


def test_defaults_fill_a_minimal_definition() -> None:
    definition = JobDefinition.model_validate(
        {"name": "n", "steps": [{"name": "s", "type": "shell", "config": {"command": ["true"]}}]}
    )
    check_definition(definition)
    assert definition.schedule is None
    assert definition.timezone == "UTC"
    assert definition.enabled is True
    assert definition.timeout_seconds == 3600
    assert definition.retries == 0
    assert (definition.retry_backoff.base_seconds, definition.retry_backoff.max_seconds) == (2, 300)
    assert definition.priority == 5
    assert definition.max_concurrency is None
    assert definition.parameters == {"type": "object"}


def test_the_spec_satisfies_the_job_changed_contract() -> None:
    spec = JobDefinition.model_validate(ARCHITECTURE_EXAMPLE).to_spec()
    data = JobChanged.model_validate(
        {
            "job_id": "6f1c1a52-7c1e-4d43-9a3e-3b7f4b1e2a60",
            "account_id": "7f1c1a52-7c1e-4d43-9a3e-3b7f4b1e2a60",
            "version": 1,
            "changed_at": "2026-11-23T12:00:00Z",
            "job": spec.model_dump(mode="json"),
        }
    )
    validate_event(build_event("job.created", source="/automation/job-api", data=data))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_step(0, type="ftp"), "steps.0.type"),
        (_config(1, command="echo hi"), "steps.1.config.command"),
        (_config(1, command=[]), "steps.1.config.command"),
        (_config(1, command=["echo", ""]), "steps.1.config.command.1"),
        (_config(1, command=["echo", 5]), "steps.1.config.command.1"),
        (_config(1, env={"A": 1}), "steps.1.config.env.A"),
        (_config(1, expected_exit_codes=[256]), "steps.1.config.expected_exit_codes.0"),
        (_config(1, cwd=""), "steps.1.config.cwd"),
        (_config(1, unknown=True), "steps.1.config.unknown"),
        (_config(0, url="ftp://example.com/file"), "steps.0.config.url"),
        (_config(0, url="https://"), "steps.0.config.url"),
        (_config(0, method="FETCH"), "steps.0.config.method"),
        (_config(0, expected_status=[99]), "steps.0.config.expected_status.0"),
        (_config(0, timeout_seconds=0), "steps.0.config.timeout_seconds"),
        (_config(0, headers={"X-A": ["list"]}), "steps.0.config.headers.X-A"),
        (_config(0, json={"a": 1}, body="raw"), "steps.0.config.body"),
        (_step(1, name="fetch"), "steps.1.name"),
        (_with(schedule="61 * * * *"), "schedule"),
        (_with(schedule="@every nope"), "schedule"),
        (_with(timezone="Mars/Olympus_Mons"), "timezone"),
        (_with(schedule=None, timezone="Not/AZone"), "timezone"),
        (_with(retry_backoff={"base_seconds": 10, "max_seconds": 5}), "retry_backoff.max_seconds"),
        (_with(parameters={"type": "string"}), "parameters.type"),
        (_with(parameters={"type": "object", "properties": {"x": {"type": "bogus"}}}), "parameters.properties.x.type"),
        (_with(parameters={"type": "object", "required": "x"}), "parameters.required"),
    ],
)
def test_checks_name_the_field_at_fault(body: dict[str, Any], field: str) -> None:
    assert _field_of(body) == field


def test_messages_say_what_is_wrong_in_plain_words() -> None:
    definition = JobDefinition.model_validate(_config(1, command="echo hi"))
    with pytest.raises(InvalidInput) as caught:
        check_definition(definition)
    assert caught.value.detail == (
        'steps.1.config.command: a string command needs "shell": true; give an argv list instead'
    )


def test_a_string_command_is_accepted_with_shell_true() -> None:
    definition = JobDefinition.model_validate(_config(1, command="echo $HOME | wc -c", shell=True))
    check_definition(definition)


def test_a_url_that_is_one_template_is_left_to_the_executor() -> None:
    definition = JobDefinition.model_validate(_config(0, url="${{ parameters.url }}"))
    check_definition(definition)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (_with(name=""), ("name",)),
        (_with(priority=10), ("priority",)),
        (_with(retries=-1), ("retries",)),
        (_with(timeout_seconds="300"), ("timeout_seconds",)),
        (_with(enabled="yes"), ("enabled",)),
        (_with(steps=[]), ("steps",)),
        (
            _with(steps=[{"name": f"s{i}", "type": "shell", "config": {"command": ["true"]}} for i in range(51)]),
            ("steps",),
        ),
        (_step(0, name="has space"), ("steps", 0, "name")),
        (_with(unexpected=1), ("unexpected",)),
        (_with(max_concurrency=0), ("max_concurrency",)),
        (_with(limits={"cpu_seconds": 0}), ("limits", "cpu_seconds")),
        (_with(limits={"address_space_bytes": 1024}), ("limits", "address_space_bytes")),
        (_with(limits={"open_files": 8}), ("limits", "open_files")),
        (_with(limits={"file_size_bytes": 2**53}), ("limits", "file_size_bytes")),
        (_with(limits={"cpu_seconds": "60"}), ("limits", "cpu_seconds")),
        (_with(limits={"memory": 1}), ("limits", "memory")),
    ],
)
def test_field_types_and_ranges_are_checked_by_the_model(body: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        JobDefinition.model_validate(body)
    assert caught.value.errors()[0]["loc"] == loc


def test_job_limits_are_accepted_and_carried_in_the_spec() -> None:
    limits = {"address_space_bytes": 512 * 1024 * 1024, "cpu_seconds": 60, "open_files": 256, "file_size_bytes": 4096}
    definition = JobDefinition.model_validate(_with(limits=limits))
    check_definition(definition)
    spec = definition.to_spec()
    assert spec.limits is not None
    assert spec.limits.model_dump() == limits
    partial = JobDefinition.model_validate(_with(limits={"cpu_seconds": 5})).to_spec()
    assert partial.limits is not None
    assert (partial.limits.cpu_seconds, partial.limits.open_files) == (5, None)
    assert JobDefinition.model_validate(ARCHITECTURE_EXAMPLE).to_spec().limits is None


REQUIRED_SITE: dict[str, Any] = {"type": "object", "properties": {"site": {"type": "string"}}, "required": ["site"]}


@pytest.mark.parametrize(
    ("parameters", "field", "words"),
    [
        (REQUIRED_SITE, "parameters.properties.site.default", "'site' is required and has no default"),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "default": "3"}}},
            "parameters.properties.n.default",
            "'3' is not of type 'integer'",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "target": {
                        "type": "object",
                        "default": {},
                        "properties": {"host": {"type": "string"}},
                        "required": ["host"],
                    }
                },
            },
            "parameters.properties.target.properties.host.default",
            "'target.host' is required",
        ),
    ],
)
def test_a_scheduled_job_needs_defaults_that_validate(parameters: dict[str, Any], field: str, words: str) -> None:
    definition = JobDefinition.model_validate(_with(parameters=parameters))
    with pytest.raises(InvalidInput) as caught:
        check_definition(definition)
    assert caught.value.field == field
    assert caught.value.detail.startswith(f"{field}: a job with a schedule runs with its parameters' defaults: ")
    assert words in caught.value.detail


def test_jobs_run_by_hand_or_by_events_may_require_parameters_without_defaults() -> None:
    by_hand = JobDefinition.model_validate(_with(schedule=None, parameters=REQUIRED_SITE))
    check_definition(by_hand)
    by_event = _with(schedule=None, parameters=REQUIRED_SITE, triggers=[{"type": "inventory.synced"}])
    check_definition(JobDefinition.model_validate(by_event))
    defaulted = copy.deepcopy(REQUIRED_SITE)
    defaulted["properties"]["site"]["default"] = "fra1"
    check_definition(JobDefinition.model_validate(_with(parameters=defaulted)))
