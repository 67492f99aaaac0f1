"""The step types of issue 4: configs are checked before anything runs, with the field at fault named."""

from __future__ import annotations

from typing import Any

import pytest

from automation_executor.domain.steps import (
    BrowserConfig,
    EventEmitConfig,
    PythonConfig,
    SftpUploadConfig,
    SshExecConfig,
    StepConfigError,
    WinrmExecConfig,
    parse_check,
    parse_job,
    parse_step,
    parse_steps,
)

SSH = {"host": "db1.internal", "username": "deploy", "password_secret": "SSH_PASSWORD", "known_hosts_secret": "KNOWN"}
WINRM = {"endpoint": "https://win1:5986/wsman", "username": "admin", "password_secret": "WIN_PASSWORD"}


def _step(kind: str, **config: Any) -> dict[str, Any]:
    return {"name": "s", "type": kind, "config": config}


def test_every_kind_parses_with_defaults() -> None:
    steps = parse_steps(
        [
            {"name": "py", "type": "python", "config": {"handler": "pkg.mod:run", "args": {"n": 1}}},
            {"name": "ev", "type": "event.emit", "config": {"type": "inventory.synced", "data": {"n": 1}}},
            {"name": "br", "type": "browser", "config": {"actions": [{"type": "goto", "url": "https://example.org"}]}},
            {"name": "ssh", "type": "ssh.exec", "config": {**SSH, "command": "uptime"}},
            {"name": "up", "type": "sftp.upload", "config": {**SSH, "content": "x", "remote_path": "/tmp/x"}},
            {"name": "down", "type": "sftp.download", "config": {**SSH, "remote_path": "/tmp/x", "local_path": "x"}},
            {"name": "win", "type": "winrm.exec", "config": {**WINRM, "script": "Get-Date"}},
            {"name": "cp", "type": "winrm.copy", "config": {**WINRM, "content": "x", "remote_path": "C:\\x.txt"}},
        ]
    )
    assert [s.kind for s in steps] == [
        "python",
        "event.emit",
        "browser",
        "ssh.exec",
        "sftp.upload",
        "sftp.download",
        "winrm.exec",
        "winrm.copy",
    ]
    python, event, browser, ssh, upload, *_, winrm, _copy = steps
    assert isinstance(python.config, PythonConfig)
    assert python.config.args == {"n": 1}
    assert isinstance(event.config, EventEmitConfig)
    assert event.config.source is None
    assert isinstance(browser.config, BrowserConfig)
    assert browser.config.timeout == 30
    assert isinstance(ssh.config, SshExecConfig)
    assert ssh.config.port == 22
    assert ssh.config.expected_exit_codes == [0]
    assert ssh.config.connect_timeout == 30
    assert ssh.secrets == {"SSH_PASSWORD", "KNOWN"}
    assert isinstance(upload.config, SftpUploadConfig)
    assert isinstance(winrm.config, WinrmExecConfig)
    assert winrm.config.transport == "ntlm"
    assert winrm.config.server_cert_validation == "validate"


@pytest.mark.parametrize(
    ("kind", "config", "field", "message"),
    [
        ("python", {"handler": "os.system"}, "handler", "package.module:function"),
        ("python", {"handler": "m:f", "args": {"ctx": 1}}, "args.ctx", "context"),
        ("python", {"handler": "m:f", "args": {"class": 1}}, "args.class", "keyword argument"),
        ("python", {"handler": "m:f", "args": {"token_secret": "s3cret!"}}, "args.token_secret", "NAME of a secret"),
        ("event.emit", {"type": "execution.succeeded"}, "type", "platform event type"),
        ("event.emit", {"type": "job.whatever"}, "type", "platform event type"),
        ("event.emit", {"type": "a.*"}, "type", "routing key"),
        ("event.emit", {"type": "x.y", "data": {"t": "${{ secrets.TOKEN }}"}}, "data.t", "published as an event"),
        ("browser", {"actions": []}, "actions", "at least 1"),
        ("browser", {"actions": [{"type": "teleport"}]}, "actions.0.type", "teleport"),
        ("browser", {"actions": [{"type": "goto"}]}, "actions.0.url", "required"),
        (
            "browser",
            {"actions": [{"type": "evaluate", "name": "x", "expression": "f('${{ parameters.v }}')"}]},
            "actions.0.expression",
            "JavaScript",
        ),
        ("ssh.exec", {**SSH, "command": "x", "known_hosts_secret": None}, "known_hosts_secret", "host keys"),
        (
            "ssh.exec",
            {**SSH, "command": "x", "insecure_skip_host_key_check": True},
            "insecure_skip_host_key_check",
            "contradicts",
        ),
        ("ssh.exec", {**SSH, "command": "x", "private_key_secret": "KEY"}, "private_key_secret", "not both"),
        ("ssh.exec", {**SSH, "command": "x", "password_secret": "hunter2"}, "password_secret", "NAME of a secret"),
        ("ssh.exec", {**SSH, "command": "echo '${{ parameters.x }}'"}, "command", "single quotes"),
        ("ssh.exec", {**SSH, "host": "ssh://x", "command": "x"}, "host", "host name"),
        ("sftp.upload", {**SSH, "remote_path": "/x"}, "local_path", "what to upload"),
        ("sftp.upload", {**SSH, "remote_path": "/x", "content": "", "mode": "rwx"}, "mode", "octal"),
        ("sftp.download", {**SSH, "remote_path": "/x", "local_path": "../x"}, "local_path", "no '..'"),
        ("sftp.download", {**SSH, "remote_path": "/x", "local_path": "/etc/passwd"}, "local_path", "relative"),
        ("winrm.exec", {**WINRM, "script": "x", "endpoint": "http://win1:5985/wsman"}, "endpoint", "https://"),
        ("winrm.exec", {**WINRM, "script": "x", "password_secret": None}, "password_secret", "needs password"),
        (
            "winrm.exec",
            {**WINRM, "script": "x", "ca_secret": "CA", "server_cert_validation": "ignore"},
            "ca_secret",
            "contradicts",
        ),
        ("winrm.exec", {**WINRM, "script": "x", "transport": "digest"}, "transport", "'ntlm'"),
        ("winrm.copy", {**WINRM, "remote_path": "C:\\x", "content": "a", "local_path": "b"}, "content", "not both"),
    ],
)
def test_errors_name_the_field(kind: str, config: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(StepConfigError) as caught:
        parse_step(0, _step(kind, **config))
    assert caught.value.field == f"steps.0.config.{field}"
    assert message in caught.value.message


def test_shell_steps_may_ask_for_the_sandbox() -> None:
    boxed = parse_step(0, _step("shell", command=["true"], sandbox="bubblewrap", network=False))
    assert boxed.kind == "shell"
    with pytest.raises(StepConfigError, match="bubblewrap") as caught:
        parse_step(0, _step("shell", command=["true"], network=False))
    assert caught.value.field == "steps.0.config.network"


def test_secret_names_come_from_templates_and_secret_fields() -> None:
    step = parse_step(
        0,
        _step(
            "http",
            url="https://api/${{ secrets.PATH_TOKEN }}",
            headers={"Authorization": "Bearer ${{ secrets.API_TOKEN }}"},
        ),
    )
    assert step.secrets == {"PATH_TOKEN", "API_TOKEN"}
    python = parse_step(0, _step("python", handler="m:f", args={"token_secret": "API_TOKEN", "n": "${{ secrets.N }}"}))
    assert python.secrets == {"API_TOKEN", "N"}
    with pytest.raises(StepConfigError, match="capitals"):
        parse_step(0, _step("shell", command=["echo", "${{ secrets.lower }}"]))


def test_check_step_and_check_payload_references() -> None:
    check, steps = parse_job(
        [{"name": "use", "type": "shell", "config": {"command": ["echo", "${{ check.payload.pending }}"]}}],
        {"type": "python", "config": {"handler": "m:f", "args": {"site": "${{ parameters.site }}"}}},
    )
    assert check is not None
    assert check.name == "check"
    assert [s.name for s in steps] == ["use"]
    with pytest.raises(StepConfigError, match="this job has no check step") as no_check:
        parse_steps([{"name": "use", "type": "shell", "config": {"command": ["echo", "${{ check.payload.x }}"]}}])
    assert no_check.value.field == "steps.0.config.command.1"
    with pytest.raises(StepConfigError, match="its own payload") as own:
        parse_check({"type": "shell", "config": {"command": ["echo", "${{ check.payload.x }}"]}})
    assert own.value.field == "check.config.command.1"
    with pytest.raises(StepConfigError, match="cannot read their output"):
        parse_check({"type": "shell", "config": {"command": ["echo", "${{ steps.a.output }}"]}})
    with pytest.raises(StepConfigError, match=r"check\.payload"):
        parse_steps([{"name": "u", "type": "shell", "config": {"command": ["${{ check.output }}"]}}], has_check=True)
    with pytest.raises(StepConfigError) as bad_type:
        parse_check({"type": "teleport", "config": {}})
    assert bad_type.value.field == "check.type"


def test_browser_templates_are_checked_with_stand_ins() -> None:
    step = parse_step(
        0,
        _step(
            "browser",
            actions=[
                {"type": "goto", "url": "${{ parameters.base }}/login"},
                {"type": "fill", "selector": "#user", "value": "${{ parameters.user }}"},
                {"type": "fill", "selector": "#password", "value": "${{ secrets.WEB_PASSWORD }}"},
                {
                    "type": "set_cookies",
                    "cookies": [{"name": "a", "value": "b", "url": "https://x/${{ parameters.p }}"}],
                },
            ],
            viewport={"width": 800, "height": 600},
            timeout_seconds=60,
        ),
    )
    assert step.secrets == {"WEB_PASSWORD"}
    assert isinstance(step.config, BrowserConfig)
    assert step.config.timeout == 60
