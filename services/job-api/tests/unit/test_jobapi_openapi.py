"""job-api's OpenAPI document: every error response is problem+json (automation_core.openapi)."""

from __future__ import annotations

from automation_job_api.app import create_app
from automation_job_api.settings import JobApiSettings
from automation_testing.openapi import problem_faults, statuses


def test_every_error_response_is_problem_json_and_tags_are_kept() -> None:
    doc = create_app(JobApiSettings(env="development", jwt_secret="x" * 32)).openapi()
    assert problem_faults(doc) == []
    assert {t["name"] for t in doc["tags"]} >= {"accounts", "auth", "jobs", "executions", "dead-letters"}
    assert statuses(doc, "get", "/api/v1/jobs/{job_id}") == {"200", "401", "403", "404", "422", "503"}
    for path, operations in doc["paths"].items():  # every route reads the database (its key at least)
        if path.startswith("/api/v1/"):
            for method, operation in operations.items():
                assert "503" in operation["responses"], (method, path)
