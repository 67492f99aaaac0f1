"""The shared step configs and template grammar: typed configs, scope rules, and errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from automation_contracts import ContractError
from automation_contracts.steps import (
    STEP_CONFIGS,
    BrowserConfig,
    HttpConfig,
    ShellConfig,
    SshExecConfig,
    TemplateError,
    TemplateScope,
    check_reference,
    check_shell_script,
    check_templates,
    parse_config,
    parse_expression,
    parse_templates,
)

SSH = {"host": "db1", "username": "deploy", "private_key_secret": "KEY", "known_hosts_secret": "KNOWN"}


def templates(step_type: str, config: dict[str, Any], scope: TemplateScope | None = None) -> frozenset[str]:
    parsed = parse_config("steps.1", step_type, config)
    return check_templates("steps.1", config, parsed, scope or TemplateScope(earlier_steps=frozenset({"a"})))


def test_parse_config_gives_the_typed_model_with_the_spec_defaults() -> None:
    shell = parse_config("steps.0", "shell", {"command": ["true"]})
    assert isinstance(shell, ShellConfig)
    assert (shell.expected_exit_codes, shell.sandbox, shell.network) == ([0], "none", True)
    http = parse_config("steps.0", "http", {"url": "https://x", "json": None})
    assert isinstance(http, HttpConfig)
    assert (http.method, http.timeout, http.status_expected(204), http.status_expected(404)) == ("GET", 30, True, False)
    assert set(parse_config("steps.0", "http", {"url": "https://x", "ca_secret": "CA"}).secret_fields()) == {"CA"}
    ssh = parse_config("steps.0", "ssh.exec", {**SSH, "passphrase_secret": "KEY_PASS", "command": "id"})
    assert isinstance(ssh, SshExecConfig)
    assert (ssh.port, ssh.connect_timeout) == (22, 30)
    assert set(ssh.secret_fields()) == {"KEY", "KEY_PASS", "KNOWN"}
    browser = parse_config("steps.0", "browser", {"actions": [{"type": "goto", "url": "${{ parameters.base }}/x"}]})
    for url in ("about:blank", "https://${{ parameters.host }}/login", "HTTP://example.test"):
        parse_config("steps.0", "browser", {"actions": [{"type": "goto", "url": url}]})  # browser-pool opens these
    assert isinstance(browser, BrowserConfig)
    assert browser.timeout == 30
    assert len(STEP_CONFIGS) == 10


@pytest.mark.parametrize(
    ("step_type", "config", "path", "words"),
    [
        ("teleport", {}, "check.type", "unknown step type 'teleport'"),
        ("shell", ["true"], "check.config", "must be an object"),
        ("shell", {"command": "ls"}, "check.config.command", 'needs "shell": true'),
        ("shell", {"command": ["ls"], "cwd": "C:\\temp"}, "check.config.cwd", "inside the execution's working"),
        ("http", {"url": "https://x", "json": {}, "body": ""}, "check.config.body", 'give "json" or "body"'),
        ("http", {"url": "https://x", "method": "get"}, "check.config.method", "Input should be 'GET'"),
        (
            "http",
            {"url": "https://x", "ca_secret": "CA", "server_cert_validation": "ignore"},
            "check.config.ca_secret",
            "contradicts",
        ),
        ("http", {"url": "https://x", "ca_secret": "-----BEGIN"}, "check.config.ca_secret", "NAME"),
        ("ssh.exec", {**SSH, "command": "id", "password": "x"}, "check.config.password", "give password_secret"),
        (
            "ssh.exec",
            {**SSH, "private_key_secret": None, "password_secret": "PW", "passphrase_secret": "PP", "command": "id"},
            "check.config.passphrase_secret",
            "goes with private_key_secret",
        ),
        ("event.emit", {"type": "run.requested"}, "check.config.type", "platform event type"),
        ("browser", {"actions": [{"type": "goto", "url": "x"}]}, "check.config.actions.0.url", "absolute URI"),
        (
            "browser",
            {"actions": [{"type": "goto", "url": "data:text/html,%3Ch1%3Ehi%3C/h1%3E"}]},
            "check.config.actions.0.url",
            "browser-pool opens only http(s) URLs and about:blank",
        ),
        ("browser", {"actions": [{"type": "goto", "url": "http:/x"}]}, "check.config.actions.0.url", "no host"),
        (
            "browser",
            {
                "actions": [
                    {"type": "goto", "url": "about:blank"},
                    {"type": "set_cookies", "cookies": [{"name": "a", "value": "b", "url": "file:///etc/passwd"}]},
                ]
            },
            "check.config.actions.1.cookies.0.url",
            "opens only http(s) URLs)",
        ),
        (
            "browser",
            {"actions": [{"type": "evaluate", "name": "n", "expression": "go(${{ parameters.x }})"}]},
            "check.config.actions.0.expression",
            "JavaScript",
        ),
    ],
)
def test_parse_config_names_the_field_at_fault(step_type: str, config: Any, path: str, words: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_config("check", step_type, config)
    assert caught.value.path == path
    assert words in caught.value.reason


def test_templates_give_their_secret_names_and_are_checked_in_scope() -> None:
    http = {"url": "https://x/${{ steps.a.output.id }}", "headers": {"A": "Bearer ${{ secrets.API_TOKEN }}"}}
    assert templates("http", http) == {"API_TOKEN"}
    with pytest.raises(ContractError) as later:
        templates("shell", {"command": ["echo", "${{ steps.b.output }}"]})
    assert later.value.path == "steps.1.config.command.1"
    assert "'b' is not an earlier step" in later.value.reason
    with pytest.raises(ContractError) as published:
        templates("event.emit", {"type": "x.y", "data": {"t": "${{ secrets.T }}"}})
    assert (published.value.path, "published" in published.value.reason) == ("steps.1.config.data.t", True)
    with pytest.raises(ContractError) as undeclared:
        templates("shell", {"command": ["${{ parameters.x }}"]}, TemplateScope(parameters=frozenset({"y"})))
    assert "not declared" in undeclared.value.reason
    assert templates("shell", {"command": ["${{ parameters.x }}"]}) == frozenset()  # None: parameters unchecked


def test_shell_script_fields_take_templates_only_as_words() -> None:
    assert templates("shell", {"command": "grep -c ${{ parameters.x }} f | wc", "shell": True}) == frozenset()
    with pytest.raises(ContractError) as quoted:
        templates("shell", {"command": "echo '${{ parameters.x }}'", "shell": True})
    assert (quoted.value.path, "single quotes" in quoted.value.reason) == ("steps.1.config.command", True)
    with pytest.raises(ContractError) as ssh:
        templates("ssh.exec", {**SSH, "command": "echo $${{ parameters.x }}"})
    assert "follows '$'" in ssh.value.reason
    assert templates("shell", {"command": ["sh", "-c", "'${{ parameters.x }}'"]}) == frozenset()  # argv: no shell


@pytest.mark.parametrize(
    ("script", "where"),
    [
        ("echo `${{ parameters.x }}`", "backquotes"),
        ("echo $(( ${{ parameters.x }} + 1 ))", "arithmetic"),
        ("echo ok # ${{ parameters.x }}", "comment"),
        ("echo $'${{ parameters.x }}'", "$'...' quotes"),
    ],
)
def test_check_shell_script_knows_the_quoting_context(script: str, where: str) -> None:
    with pytest.raises(TemplateError, match=where.replace("$", r"\$").replace("(", r"\(")):
        check_shell_script(script)


def test_the_grammar_parses_every_template_and_refuses_malformed_ones() -> None:
    refs = parse_templates("a ${{ parameters.x }} b ${{steps.s-1.output.k_2}} c")
    assert [r.parts for r in refs] == [("parameters", "x"), ("steps", "s-1", "output", "k_2")]
    assert parse_templates("no templates, even with $ { { braces") == []
    assert parse_expression(" check.payload.n ") == ("check", "payload", "n")
    for bad, words in (
        ("${{ parameters.x }} and ${{ unclosed", "never closed"),
        ("${{ env.HOME }}", "unknown root 'env'"),
        ("${{ parameters }}", "not a template expression"),
        ("${{ steps.a.result }}", "steps.<name>.output"),
        ("${{ secrets.lower }}", "secrets.NAME"),
        ("${{ check.output }}", "check.payload"),
    ):
        with pytest.raises(TemplateError, match=words.replace(".", r"\.").replace("<", "<")):
            parse_templates(bad)


def test_references_are_checked_against_their_scope() -> None:
    scope = TemplateScope(frozenset({"x"}), earlier_steps=frozenset({"s"}), step_name="t", has_check=True)
    for ok in ("${{ parameters.x.y }}", "${{ steps.s.output.z }}", "${{ event.id }}", "${{ secrets.S }}"):
        check_reference(parse_templates(ok)[0], scope)
    for bad, words in (
        ("${{ steps.t.output }}", "its own output"),
        ("${{ check.payload }}", "its own payload"),
    ):
        in_check = TemplateScope(frozenset(), step_name="t", has_check=True, in_check=bad.endswith("payload }}"))
        with pytest.raises(TemplateError, match=words):
            check_reference(parse_templates(bad)[0], in_check)
    with pytest.raises(TemplateError, match="published"):
        check_reference(parse_templates("${{ secrets.S }}")[0], TemplateScope(frozenset(), secrets_allowed=False))
