"""Step configuration parsing: typed configs, or an error naming the field at fault."""

from __future__ import annotations

from typing import Any

import pytest

from automation_executor.domain.steps import HttpConfig, ShellConfig, StepConfigError, parse_step, parse_steps


def _shell(**config: Any) -> dict[str, Any]:
    return {"name": "s", "type": "shell", "config": config}


def test_shell_defaults_and_argv() -> None:
    step = parse_step(0, _shell(command=["echo", "hi"]))
    assert step.kind == "shell"
    assert isinstance(step.config, ShellConfig)
    assert step.config.command == ["echo", "hi"]
    assert step.config.expected_exit_codes == [0]
    assert step.config.env == {}
    assert step.timeout_seconds is None


def test_shell_string_and_options() -> None:
    step = parse_step(
        1,
        {
            "name": "s",
            "type": "shell",
            "config": {
                "command": "echo hi",
                "shell": True,
                "cwd": "sub",
                "env": {"A_B": "1"},
                "expected_exit_codes": [0, 3],
            },
            "timeout_seconds": 5,
        },
    )
    assert isinstance(step.config, ShellConfig)
    assert step.config.shell
    assert step.config.expected_exit_codes == [0, 3]
    assert step.timeout_seconds == 5


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"command": "echo hi"}, "steps.0.config.command", 'needs "shell": true'),
        ({"command": ["echo"], "shell": True}, "steps.0.config.command", "one string"),
        ({"command": []}, "steps.0.config.command", "at least 1"),
        ({}, "steps.0.config.command", "required"),
        ({"command": ["x"], "env": {"1BAD": "x"}}, "steps.0.config.env.1BAD", "not an environment variable name"),
        (
            {"command": ["x"], "expected_exit_codes": [300]},
            "steps.0.config.expected_exit_codes.0",
            "less than or equal",
        ),
        ({"command": ["x"], "surprise": 1}, "steps.0.config.surprise", "Extra inputs"),
        ({"command": 'echo "${{ parameters.x }}"', "shell": True}, "steps.0.config.command", "double quotes"),
        ({"command": ["echo", "${{ nope.x }}"]}, "steps.0.config.command.1", "unknown root"),
        ({"command": ["x"], "cwd": "/etc"}, "steps.0.config.cwd", "inside the execution's working directory"),
        ({"command": ["x"], "cwd": "a/../../b"}, "steps.0.config.cwd", "no '..'"),
        ({"command": ["x"], "network": False}, "steps.0.config.network", 'needs "sandbox": "bubblewrap"'),
    ],
)
def test_shell_errors_name_the_field(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(StepConfigError) as caught:
        parse_step(0, _shell(**config))
    assert caught.value.field == field
    assert message in caught.value.message


def test_http_defaults_and_status_rules() -> None:
    step = parse_step(0, {"name": "h", "type": "http", "config": {"url": "https://example.org", "json": {"a": 1}}})
    config = step.config
    assert isinstance(config, HttpConfig)
    assert config.method == "GET"
    assert config.json_body == {"a": 1}
    assert config.timeout_seconds is None
    assert config.timeout == 30
    assert config.max_body_bytes is None
    assert config.status_expected(204)
    assert not config.status_expected(404)
    strict = HttpConfig.model_validate({"url": "http://x", "method": "POST", "expected_status": [404]})
    assert strict.method == "POST"
    assert strict.status_expected(404)
    assert not strict.status_expected(200)


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"url": "http://x", "method": "BREW"}, "steps.0.config.method", "Input should be 'GET'"),
        ({"url": "http://x", "method": "post"}, "steps.0.config.method", "Input should be 'GET'"),
        ({"url": "http://x", "json": {}, "body": "x"}, "steps.0.config.body", 'give "json" or "body"'),
        ({"url": "ftp://x"}, "steps.0.config.url", "url must start with http:// or https://"),
        ({"url": "http://x", "timeout_seconds": 0}, "steps.0.config.timeout_seconds", "greater than 0"),
        ({"method": "GET"}, "steps.0.config.url", "required"),
        ({"url": "http://x", "headers": {"A": "${{ steps.s.output.x }}"}}, "steps.0.config.headers.A", "earlier step"),
    ],
)
def test_http_errors_name_the_field(config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(StepConfigError) as caught:
        parse_step(0, {"name": "h", "type": "http", "config": config})
    assert caught.value.field == field
    assert message in caught.value.message


def test_unknown_types_and_step_order() -> None:
    with pytest.raises(StepConfigError, match="unknown step type 'teleport'") as caught:
        parse_steps([_shell(command=["x"]), {"name": "p", "type": "teleport", "config": {}}])
    assert caught.value.field == "steps.1.type"
    steps = parse_steps(
        [
            {"name": "fetch", "type": "http", "config": {"url": "http://x/${{ parameters.a }}"}},
            {"name": "use", "type": "shell", "config": {"command": ["echo", "${{ steps.fetch.output.status }}"]}},
        ]
    )
    assert [s.name for s in steps] == ["fetch", "use"]
    with pytest.raises(StepConfigError, match="'use' is not an earlier step"):
        parse_steps(
            [
                {
                    "name": "fetch",
                    "type": "http",
                    "config": {"url": "http://x", "json": {"a": "${{ steps.use.output }}"}},
                },
                {"name": "use", "type": "shell", "config": {"command": ["true"]}},
            ]
        )


def test_the_fork_server_prepares_what_a_childs_first_request_would_import_and_one_ssl_context() -> None:
    import ssl
    import sys

    from automation_executor.child import http
    from automation_executor.settings import ExecutorSettings

    assert "automation_executor.child.http" in ExecutorSettings.model_fields["executor_forkserver_preload"].get_default(
        call_default_factory=True
    ), "the fork server preloads the http step, and so calls its prepare_fork"
    http.prepare_fork()
    assert set(http.LAZY_MODULES) <= set(sys.modules)
    context = http.ssl_context()
    assert context is http.ssl_context(), "one context per process, inherited by the fork server's children"
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
