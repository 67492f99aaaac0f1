"""The executor's OpenAPI document declares the problems each route answers, as problem+json."""

from __future__ import annotations

from typing import Any

import pytest

from automation_executor.app import create_app
from automation_executor.settings import ExecutorSettings
from automation_testing.openapi import problem_faults, statuses


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return create_app(ExecutorSettings(env="development")).openapi()


def test_every_error_response_is_problem_json(doc: dict[str, Any]) -> None:
    assert problem_faults(doc) == []


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("get", "/api/v1/attempts", {"200", "401", "422", "503"}),
        ("get", "/api/v1/workers/self", {"200", "401", "422", "503"}),
    ],
)
def test_routes_declare_the_statuses_they_answer(
    doc: dict[str, Any], method: str, path: str, expected: set[str]
) -> None:
    assert statuses(doc, method, path) == expected
