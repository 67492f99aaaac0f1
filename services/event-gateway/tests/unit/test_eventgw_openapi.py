"""The gateway's OpenAPI document declares the problems each route answers, as problem+json."""

from __future__ import annotations

from typing import Any

import pytest

from automation_event_gateway.app import create_app
from automation_event_gateway.settings import EventGatewaySettings
from automation_testing.openapi import problem_faults, statuses


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return create_app(EventGatewaySettings(env="development")).openapi()


def test_every_error_response_is_problem_json(doc: dict[str, Any]) -> None:
    assert problem_faults(doc) == []


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("post", "/api/v1/events", {"200", "202", "401", "403", "413", "415", "422", "503"}),
        ("get", "/api/v1/events", {"200", "401", "422", "503"}),
        ("get", "/api/v1/events/{event_uuid}", {"200", "401", "404", "422", "503"}),
        ("put", "/api/v1/event-types/{event_type}", {"200", "201", "401", "403", "422", "503"}),
        ("get", "/api/v1/event-types", {"200", "401", "422", "503"}),
        ("get", "/api/v1/event-types/{event_type}", {"200", "401", "404", "422", "503"}),
    ],
)
def test_routes_declare_the_statuses_they_answer(
    doc: dict[str, Any], method: str, path: str, expected: set[str]
) -> None:
    assert statuses(doc, method, path) == expected


def test_post_events_keeps_its_own_descriptions_and_documents_the_repeat(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/api/v1/events"]["post"]["responses"]
    assert "charset" in responses["415"]["description"]
    refs = {"#/components/schemas/IngestResultOut", "#/components/schemas/BatchResultOut"}
    for code in ("200", "202"):
        schema = responses[code]["content"]["application/json"]["schema"]
        assert {one["$ref"] for one in schema["anyOf"]} == refs
