"""Templates in step configs, the check step, and secrets by name: what a definition may refer to."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from automation_core.errors import InvalidInput
from automation_job_api.domain.definitions import JobDefinition, validate_job

PARAMETERS = {
    "type": "object",
    "properties": {"site": {"type": "string", "default": "fra1"}, "target": {"type": "object"}},
}


def job(*steps: dict[str, Any], check: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "j", "parameters": copy.deepcopy(PARAMETERS), "steps": list(steps), **fields}
    if check is not None:
        body["check"] = check
    return body


def shell(name: str, *argv: str) -> dict[str, Any]:
    return {"name": name, "type": "shell", "config": {"command": ["echo", *argv]}}


def refused(body: dict[str, Any]) -> InvalidInput:
    definition = JobDefinition.model_validate(body)
    with pytest.raises(InvalidInput) as caught:
        validate_job(definition)
    assert caught.value.field is not None
    assert caught.value.detail.startswith(caught.value.field + ": ")
    return caught.value


def test_every_root_is_accepted_where_it_can_be_substituted() -> None:
    body = job(
        shell("first", "${{ parameters.site }}", "${{ parameters.target.host }}", "${{event.data.items.0.id}}"),
        shell("second", "${{ steps.first.output.stdout_tail }}", "${{ steps.first.output }}"),
        {
            "name": "third",
            "type": "http",
            "config": {
                "url": "https://x/${{ check.payload.path }}",
                "headers": {"Authorization": "Bearer ${{ secrets.API_TOKEN }}"},
                "json": {"ids": ["${{ check.payload }}", "${{ steps.second.output.exit_code }}"]},
            },
        },
        check={"name": "probe", "type": "http", "config": {"url": "https://x/changed?since=${{ parameters.site }}"}},
    )
    validate_job(JobDefinition.model_validate(body))


@pytest.mark.parametrize(
    ("argument", "field", "words"),
    [
        ("${{ parameters.nope }}", "steps.0.config.command.2", "not declared"),
        ("${{ parameters }}", "steps.0.config.command.2", "not a template expression"),
        ("${{ parameters.a b }}", "steps.0.config.command.2", "not a template expression"),
        ("${{ env.HOME }}", "steps.0.config.command.2", "unknown root 'env'"),
        ("${{ parameters.site", "steps.0.config.command.2", "never closed"),
        ("${{ steps.second.output }}", "steps.0.config.command.2", "not an earlier step"),
        ("${{ steps.first.output }}", "steps.0.config.command.2", "its own output"),
        ("${{ steps.ghost.output }}", "steps.0.config.command.2", "not an earlier step"),
        ("${{ steps.second.result }}", "steps.0.config.command.2", "steps.<name>.output"),
        ("${{ secrets.lower }}", "steps.0.config.command.2", "secrets.NAME"),
        ("${{ secrets.A.B }}", "steps.0.config.command.2", "secrets.NAME"),
        ("${{ check.payload.x }}", "steps.0.config.command.2", "no check step"),
        ("${{ check.output }}", "steps.0.config.command.2", "check.payload"),
    ],
)
def test_bad_templates_name_the_string_they_are_in(argument: str, field: str, words: str) -> None:
    error = refused(job(shell("first", "ok", argument), shell("second", "x")))
    assert error.field == field
    assert words in error.detail


def test_template_paths_reach_into_nested_config() -> None:
    step = {
        "name": "post",
        "type": "http",
        "config": {"url": "https://x", "json": {"items": [{"id": "ok"}, {"id": "${{ parameters.missing }}"}]}},
    }
    assert refused(job(step)).field == "steps.0.config.json.items.1.id"


def test_secrets_cannot_be_published_by_event_emit() -> None:
    emit = {"name": "tell", "type": "event.emit", "config": {"type": "x.done", "data": {"t": "${{ secrets.TOKEN }}"}}}
    error = refused(job(emit))
    assert error.field == "steps.0.config.data.t"
    assert "published" in error.detail


def test_the_check_step_runs_first_so_it_reads_no_step_and_not_its_own_payload() -> None:
    assert (
        refused(job(shell("a", "x"), check=shell("probe", "${{ steps.a.output }}"))).field == "check.config.command.1"
    )
    assert refused(job(shell("a", "x"), check=shell("probe", "${{ check.payload }}"))).field == "check.config.command.1"


def test_the_check_step_is_checked_like_any_step() -> None:
    assert refused(job(shell("a", "x"), check={"name": "p", "type": "ftp", "config": {}})).field == "check.type"
    bad = {"name": "p", "type": "shell", "config": {"command": "x"}}
    assert refused(job(shell("a", "x"), check=bad)).field == "check.config.command"
    assert refused(job(shell("a", "x"), check=shell("a", "y"))).field == "check.name"


def test_the_check_step_reaches_the_spec() -> None:
    definition = JobDefinition.model_validate(job(shell("a", "${{ check.payload.n }}"), check=shell("probe", "y")))
    validate_job(definition)
    spec = definition.to_spec().model_dump(mode="json")
    assert spec["check"]["name"] == "probe"
    assert definition.model_dump(mode="json")["check"]["name"] == "probe"


def test_job_level_limits_are_checked() -> None:
    for field, value in (("priority", 10), ("priority", -1), ("max_concurrency", 0)):
        body = job(shell("a", "x"))
        body[field] = value
        with pytest.raises(ValueError, match=field):
            JobDefinition.model_validate(body)
    definition = JobDefinition.model_validate(job(shell("a", "x"), priority=9, max_concurrency=1))
    validate_job(definition)


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ({"type": "shell", "config": {"command": "echo '${{ parameters.site }}'", "shell": True}}, "single quotes"),
        ({"type": "shell", "config": {"command": 'echo "${{ parameters.site }}"', "shell": True}}, "double quotes"),
        (
            {
                "type": "ssh.exec",
                "config": {
                    "host": "h",
                    "username": "u",
                    "password_secret": "PW",
                    "known_hosts_secret": "K",
                    "command": "cat <<EOF\n${{ parameters.site }}\nEOF",
                },
            },
            "here-document",
        ),
    ],
)
def test_shell_script_templates_must_stand_as_words(step: dict[str, Any], words: str) -> None:
    error = refused(job({"name": "s", **step}))
    assert error.field == "steps.0.config.command"
    assert words in error.detail
    as_word = {"name": "s", "type": "shell", "config": {"command": "echo ${{ parameters.site }} | wc", "shell": True}}
    validate_job(JobDefinition.model_validate(job(as_word)))


def test_the_check_step_is_named_check_unless_named_otherwise() -> None:
    body = job(shell("a", "x"), check={"type": "http", "config": {"url": "https://x/changed"}})
    definition = JobDefinition.model_validate(body)
    validate_job(definition)
    assert definition.model_dump(mode="json")["check"]["name"] == "check"
    assert (
        refused(job(shell("check", "x"), check={"type": "shell", "config": {"command": ["y"]}})).field == "check.name"
    )
