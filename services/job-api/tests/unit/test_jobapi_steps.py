"""Step configs of every type: what is accepted, and refusals that name the field at fault."""

from __future__ import annotations

from typing import Any

import pytest

from automation_core.errors import InvalidInput
from automation_job_api.domain.steps import STEP_CONFIGS, check_step

SSH = {"host": "db1.internal", "username": "deploy", "private_key_secret": "DEPLOY_KEY", "known_hosts_secret": "KNOWN"}
WINRM = {"endpoint": "https://win1.internal:5986/wsman", "username": "svc", "password_secret": "WIN_PASSWORD"}

VALID: list[tuple[str, dict[str, Any]]] = [
    ("shell", {"command": ["echo", "hi"]}),
    ("shell", {"command": "echo ${{ parameters.who }} | wc -c", "shell": True, "cwd": "work/dir", "env": {"A_1": "x"}}),
    ("shell", {"command": ["curl", "https://x"], "sandbox": "bubblewrap", "network": False}),
    ("shell", {"command": ["true"], "sandbox": "bubblewrap", "expected_exit_codes": [0, 3]}),
    ("python", {"handler": "inventory.tasks:sync"}),
    ("python", {"handler": "inventory.tasks.nightly:sync_all", "args": {"site": "${{ parameters.site }}", "n": 3}}),
    ("python", {"handler": "mod:fn", "args": {"token_secret": "API_TOKEN"}}),
    ("http", {"url": "https://api.internal/v1", "method": "POST", "json": {"a": [1, "${{ steps.x.output.id }}"]}}),
    ("http", {"url": "${{ parameters.endpoint }}", "body": "raw", "max_body_bytes": 2048, "follow_redirects": True}),
    ("ssh.exec", {**SSH, "command": "systemctl restart app", "port": 2222, "connect_timeout_seconds": 5}),
    (
        "ssh.exec",
        {"host": "h", "username": "u", "password_secret": "PW", "insecure_skip_host_key_check": True, "command": "id"},
    ),
    ("sftp.upload", {**SSH, "content": "hello\n", "remote_path": "/srv/app/motd", "mode": "0644"}),
    ("sftp.upload", {**SSH, "local_path": "build/app.tar.gz", "remote_path": "/tmp/app.tar.gz"}),
    ("sftp.download", {**SSH, "remote_path": "/var/log/app.log", "local_path": "logs/app.log"}),
    ("sftp.download", {**SSH, "passphrase_secret": "KEY_PASSPHRASE", "remote_path": "/x", "local_path": "x"}),
    ("ssh.exec", {**SSH, "passphrase_secret": "KEY_PASSPHRASE", "command": "uptime"}),
    ("ssh.exec", {**SSH, "host": "${{parameters.host}}", "command": "uptime"}),
    ("winrm.exec", {**WINRM, "script": "Get-Service | Select -First 1", "transport": "ntlm"}),
    ("winrm.exec", {**WINRM, "script": "hostname", "transport": "kerberos", "ca_secret": "CORP_CA"}),
    ("winrm.exec", {"endpoint": "https://w:5986/wsman", "username": "u", "transport": "kerberos", "script": "x"}),
    ("winrm.copy", {**WINRM, "content": "data", "remote_path": "C:\\temp\\a.txt", "server_cert_validation": "ignore"}),
    (
        "browser",
        {
            "actions": [
                {"type": "goto", "url": "https://${{ parameters.host }}/login", "wait_until": "networkidle"},
                {"type": "fill", "selector": "#user", "value": "${{ parameters.user }}"},
                {"type": "fill", "selector": "#password", "value": "${{ secrets.PORTAL_PASSWORD }}"},
                {"type": "press", "selector": "#password", "key": "Enter"},
                {"type": "wait_for", "selector": ".dashboard", "state": "visible"},
                {"type": "extract", "selector": "h1", "name": "title"},
                {"type": "extract", "selector": "a.report", "attribute": "href", "name": "report"},
                {"type": "evaluate", "expression": "document.title", "name": "doc_title"},
                {"type": "click", "selector": "text=Logout"},
                {"type": "screenshot", "full_page": True, "name": "after"},
                {"type": "pdf"},
                {"type": "set_cookies", "cookies": [{"name": "a", "value": "b", "domain": "example.com"}]},
            ],
            "timeout_seconds": 60,
            "viewport": {"width": 1280, "height": 720},
        },
    ),
    ("browser", {"actions": [{"type": "goto", "url": "${{ parameters.url }}"}]}),
    ("event.emit", {"type": "inventory.synced", "data": {"count": "${{ steps.sync.output.count }}"}}),
    ("event.emit", {"type": "report-ready", "source": "/reports/nightly", "subject": "${{ parameters.site }}"}),
]


@pytest.mark.parametrize(("step_type", "config"), VALID)
def test_valid_configs_are_accepted_as_given(step_type: str, config: dict[str, Any]) -> None:
    parsed = check_step("steps.0", step_type, config)
    assert isinstance(parsed, STEP_CONFIGS[step_type])


def test_every_step_type_of_the_spec_is_known() -> None:
    assert set(STEP_CONFIGS) == {
        "shell",
        "python",
        "http",
        "ssh.exec",
        "sftp.upload",
        "sftp.download",
        "winrm.exec",
        "winrm.copy",
        "browser",
        "event.emit",
    }
    assert {t for t, _ in VALID} == set(STEP_CONFIGS)


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("shell", {"command": "echo hi"}, "command"),
    ("shell", {"command": ["echo", "hi"], "shell": True}, "command"),
    ("shell", {"command": ["a"], "network": False}, "network"),
    ("shell", {"command": ["a"], "sandbox": "docker"}, "sandbox"),
    ("shell", {"command": ["a"], "cwd": "/etc"}, "cwd"),
    ("shell", {"command": ["a"], "cwd": "a/../../b"}, "cwd"),
    ("shell", {"command": ["a"], "env": {"NOT-A-NAME": "x"}}, "env.NOT-A-NAME"),
    ("python", {"handler": "no_function_here"}, "handler"),
    ("python", {"handler": "pkg.mod:fn", "args": {"not an identifier": 1}}, "args.not an identifier"),
    ("python", {"handler": "pkg.mod:fn", "args": {"ctx": 1}}, "args.ctx"),
    ("python", {"handler": "pkg.mod:fn", "args": {"api_secret": "s3cr3t-value"}}, "args.api_secret"),
    ("python", {"handler": "pkg.mod:fn", "code": "print(1)"}, "code"),
    ("http", {"url": "ftp://x/y"}, "url"),
    ("http", {"url": "https://x", "max_body_bytes": 0}, "max_body_bytes"),
    ("http", {"url": "https://x", "json": {}, "body": "b"}, "body"),
    ("ssh.exec", {**SSH, "command": ""}, "command"),
    ("ssh.exec", {**SSH}, "command"),
    ("ssh.exec", {**SSH, "command": "id", "port": 0}, "port"),
    ("ssh.exec", {**SSH, "command": "id", "host": "ssh://db1"}, "host"),
    ("ssh.exec", {**SSH, "command": "id", "password_secret": "PW"}, "private_key_secret"),
    ("ssh.exec", {"host": "h", "username": "u", "known_hosts_secret": "K", "command": "id"}, "password_secret"),
    ("ssh.exec", {"host": "h", "username": "u", "password_secret": "PW", "command": "id"}, "known_hosts_secret"),
    ("ssh.exec", {**SSH, "command": "id", "insecure_skip_host_key_check": True}, "insecure_skip_host_key_check"),
    ("ssh.exec", {**SSH, "command": "id", "insecure_skip_host_key_check": "yes"}, "insecure_skip_host_key_check"),
    ("sftp.upload", {**SSH, "remote_path": "/x"}, "local_path"),
    ("sftp.upload", {**SSH, "remote_path": "/x", "content": "a", "local_path": "a"}, "content"),
    ("sftp.upload", {**SSH, "remote_path": "/x", "content": "a", "mode": 644}, "mode"),
    ("sftp.upload", {**SSH, "remote_path": "/x", "content": "a", "mode": "rwxr-xr-x"}, "mode"),
    ("sftp.upload", {**SSH, "remote_path": "/x", "local_path": "../../etc/passwd"}, "local_path"),
    ("sftp.download", {**SSH, "remote_path": "/x"}, "local_path"),
    (
        "ssh.exec",
        {"host": "h", "username": "u", "password_secret": "PW", "passphrase_secret": "PP", "known_hosts_secret": "K"}
        | {"command": "id"},
        "passphrase_secret",
    ),
    ("ssh.exec", {**SSH, "command": "id", "passphrase_secret": "my passphrase"}, "passphrase_secret"),
    ("winrm.exec", {**WINRM, "script": "x", "endpoint": "http://win1:5985/wsman"}, "endpoint"),
    ("winrm.exec", {**WINRM, "script": "x", "transport": "digest"}, "transport"),
    (
        "winrm.exec",
        {"endpoint": "https://w/wsman", "username": "u", "transport": "basic", "script": "x"},
        "password_secret",
    ),
    ("winrm.exec", {**WINRM, "script": "x", "server_cert_validation": "ignore", "ca_secret": "CA"}, "ca_secret"),
    ("winrm.exec", {**WINRM, "script": "x", "server_cert_validation": "off"}, "server_cert_validation"),
    ("winrm.copy", {**WINRM, "remote_path": "C:\\x"}, "local_path"),
    ("browser", {"actions": []}, "actions"),
    ("browser", {"actions": [{"type": "teleport"}]}, "actions.0.type"),
    ("browser", {"actions": [{"type": "goto", "url": "https://x"}, {"type": "click"}]}, "actions.1.selector"),
    ("browser", {"actions": [{"type": "goto", "url": "not a url"}]}, "actions.0.url"),
    ("browser", {"actions": [{"type": "wait_for", "selector": "a", "state": "gone"}]}, "actions.0.state"),
    ("browser", {"actions": [{"type": "click", "selector": "a", "force": True}]}, "actions.0.force"),
    ("browser", {"actions": [{"type": "pdf"}], "timeout_seconds": 601}, "timeout_seconds"),
    ("browser", {"actions": [{"type": "pdf"}], "viewport": {"width": 0, "height": 10}}, "viewport.width"),
    (
        "browser",
        {"actions": [{"type": "pdf"}, {"type": "evaluate", "name": "x", "expression": "f('${{ parameters.v }}')"}]},
        "actions.1.expression",
    ),
    (
        "browser",
        {"actions": [{"type": "evaluate", "name": "x", "expression": "${{ parameters.code }}"}]},
        "actions.0.expression",
    ),
    ("event.emit", {"type": "execution.succeeded"}, "type"),
    ("event.emit", {"type": "job.anything"}, "type"),
    ("event.emit", {"type": "inventory.*"}, "type"),
    ("event.emit", {"type": "inventory.synced", "source": "not a uri ref"}, "source"),
]


@pytest.mark.parametrize(("step_type", "config", "field"), INVALID)
def test_invalid_configs_name_the_field(step_type: str, config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_step("steps.3", step_type, config)
    assert caught.value.field == f"steps.3.config.{field}"
    assert caught.value.detail.startswith(f"steps.3.config.{field}: ")


def test_an_unknown_type_names_the_type_field_and_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_step("check", "ftp", {})
    assert caught.value.field == "check.type"
    assert "ssh.exec" in caught.value.detail


def test_templated_javascript_is_refused_and_says_how_to_pass_the_value() -> None:
    action = {"type": "evaluate", "name": "n", "expression": "document.title + '${{ secrets.TOKEN }}'"}
    with pytest.raises(InvalidInput) as caught:
        check_step("steps.0", "browser", {"actions": [action]})
    assert caught.value.field == "steps.0.config.actions.0.expression"
    assert "templates cannot be used in JavaScript" in caught.value.detail
    assert "fill action" in caught.value.detail


@pytest.mark.parametrize("field", ["password_secret", "private_key_secret", "known_hosts_secret"])
@pytest.mark.parametrize("value", ["hunter2", "db_password", "1PASSWORD", "${{ secrets.PW }}", "-----BEGIN KEY"])
def test_secret_fields_take_a_name_never_a_value(field: str, value: str) -> None:
    config = {"host": "h", "username": "u", "command": "id", "password_secret": "PW", "known_hosts_secret": "K"}
    if field == "private_key_secret":
        del config["password_secret"]
    config[field] = value
    with pytest.raises(InvalidInput) as caught:
        check_step("steps.0", "ssh.exec", config)
    assert caught.value.field == f"steps.0.config.{field}"
    assert "NAME of a secret" in caught.value.detail


@pytest.mark.parametrize(
    ("key", "step_type"), [("password", "ssh.exec"), ("private_key", "ssh.exec"), ("ca", "winrm.exec")]
)
def test_a_secret_given_by_value_points_to_the_name_field(key: str, step_type: str) -> None:
    base = {**SSH, "command": "id"} if step_type == "ssh.exec" else {**WINRM, "script": "x"}
    with pytest.raises(InvalidInput) as caught:
        check_step("steps.0", step_type, {**base, key: "the-secret-itself"})
    assert caught.value.field == f"steps.0.config.{key}"
    assert f"give {key}_secret" in caught.value.detail


INJECTION = "; rm -rf / #"


@pytest.mark.parametrize(
    ("step_type", "config"),
    [
        ("shell", {"command": ["echo", INJECTION]}),
        ("shell", {"command": f"echo {INJECTION}", "shell": True}),
        ("python", {"handler": "m:f", "args": {"value": INJECTION}}),
        ("http", {"url": "https://x/", "headers": {"X-A": INJECTION}, "body": INJECTION}),
        ("ssh.exec", {**SSH, "command": INJECTION}),
        ("sftp.upload", {**SSH, "content": INJECTION, "remote_path": f"/tmp/{INJECTION}"}),
        ("sftp.download", {**SSH, "remote_path": INJECTION, "local_path": "out"}),
        ("winrm.exec", {**WINRM, "script": INJECTION}),
        ("winrm.copy", {**WINRM, "content": INJECTION, "remote_path": INJECTION}),
        ("browser", {"actions": [{"type": "fill", "selector": "#q", "value": INJECTION}]}),
        ("event.emit", {"type": "x.y", "subject": INJECTION, "data": {"v": INJECTION}}),
    ],
)
def test_shell_metacharacters_in_values_are_accepted_as_data(step_type: str, config: dict[str, Any]) -> None:
    check_step("steps.0", step_type, config)
