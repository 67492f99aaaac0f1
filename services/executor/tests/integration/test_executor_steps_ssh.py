"""ssh.exec, sftp.upload and sftp.download against a real asyncssh server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import shlex
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_steps_sshd import KEY_PASSPHRASE, PASSWORD, USER, Sshd, running_sshd
from executor_steps_support import forked_children, injection_values, run_job

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def _forked() -> AsyncIterator[None]:
    async with forked_children():
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sshd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sshd]:
    async with running_sshd(tmp_path_factory.mktemp("sshd") / "home") as server:
        yield server


def _secrets(sshd: Sshd) -> dict[str, str]:
    return {
        "SSH_PASSWORD": PASSWORD,
        "SSH_KEY": sshd.client_key,
        "SSH_KEY_ENCRYPTED": sshd.encrypted_client_key,
        "SSH_KEY_ENCRYPTED_OPENSSH": sshd.openssh_encrypted_client_key,
        "SSH_KEY_PASSPHRASE": KEY_PASSPHRASE,
        "KNOWN_HOSTS": sshd.known_hosts,
        "WRONG_HOSTS": sshd.wrong_known_hosts,
        "BAD_PASSWORD": "nope",
    }


def _conn(sshd: Sshd, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": USER,
        "password_secret": "SSH_PASSWORD",
        "known_hosts_secret": "KNOWN_HOSTS",
        "connect_timeout_seconds": 10,
        **overrides,
    }


def _exec(name: str, sshd: Sshd, command: str, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "type": "ssh.exec", "config": {**_conn(sshd, **overrides), "command": command}}


async def test_exec_with_password_and_with_key(sshd: Sshd, tmp_path: Path) -> None:
    outcome, sink = await run_job(
        tmp_path,
        [
            _exec("hello", sshd, "echo hello ${{ parameters.who }}; echo oops >&2"),
            _exec(
                "key",
                sshd,
                "exit 3",
                password_secret=None,
                private_key_secret="SSH_KEY",
                expected_exit_codes=[3],
            ),
        ],
        secrets=_secrets(sshd),
        parameters={"who": "world"},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["hello"] == {"exit_code": 0, "stdout_tail": "hello world\n", "stderr_tail": "oops\n"}
    assert outcome.outputs["key"]["exit_code"] == 3
    assert outcome.exit_code == 3
    assert ("stdout", "hello", "hello world") in sink.lines
    assert ("stderr", "hello", "oops") in sink.lines
    assert 'automation_value_0=world; echo hello "${automation_value_0}"; echo oops >&2' in sshd.commands
    assert PASSWORD not in sink.text()


@pytest.mark.parametrize(
    ("key_secret", "header"),
    [
        ("SSH_KEY_ENCRYPTED", "-----BEGIN ENCRYPTED PRIVATE KEY-----"),  # PKCS#8 PEM
        ("SSH_KEY_ENCRYPTED_OPENSSH", "-----BEGIN OPENSSH PRIVATE KEY-----"),  # ssh-keygen's default (bcrypt-pbkdf)
    ],
)
async def test_an_encrypted_key_opens_with_its_passphrase_secret(
    sshd: Sshd, tmp_path: Path, key_secret: str, header: str
) -> None:
    assert _secrets(sshd)[key_secret].startswith(header)
    key = {"password_secret": None, "private_key_secret": key_secret}
    outcome, sink = await run_job(
        tmp_path,
        [
            _exec("exec", sshd, "echo unlocked", **key, passphrase_secret="SSH_KEY_PASSPHRASE"),
            {
                "name": "up",
                "type": "sftp.upload",
                "config": {
                    **_conn(sshd, **key, passphrase_secret="SSH_KEY_PASSPHRASE"),
                    "content": "x",
                    "remote_path": f"/enc-{uuid.uuid4().hex[:8]}.txt",
                },
            },
        ],
        secrets=_secrets(sshd),
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["exec"]["stdout_tail"] == "unlocked\n"
    assert KEY_PASSPHRASE not in sink.text()
    before = len(sshd.commands)
    missing, _ = await run_job(tmp_path, [_exec("x", sshd, "echo no", **key)], secrets=_secrets(sshd))
    assert missing.status == "failed"
    assert missing.error is not None
    assert "the private key is encrypted: give passphrase_secret" in missing.error
    wrong, _ = await run_job(
        tmp_path,
        [_exec("x", sshd, "echo no", **key, passphrase_secret="BAD_PASSWORD")],
        secrets=_secrets(sshd),
    )
    assert wrong.status == "failed"
    assert wrong.error is not None
    assert "cannot be opened with passphrase_secret" in wrong.error
    assert len(sshd.commands) == before


async def test_a_failing_remote_command_fails_the_step(sshd: Sshd, tmp_path: Path) -> None:
    outcome, _ = await run_job(tmp_path, [_exec("bad", sshd, "echo partial; exit 7")], secrets=_secrets(sshd))
    assert outcome.status == "failed"
    assert outcome.error == "step bad: exit code 7; expected 0"
    assert outcome.exit_code == 7
    assert outcome.outputs["bad"]["stdout_tail"] == "partial\n"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"known_hosts_secret": "WRONG_HOSTS"}, "host key not accepted"),
        ({"password_secret": "BAD_PASSWORD"}, "login refused"),
        ({"port": 1}, "cannot connect"),
    ],
)
async def test_wrong_host_keys_and_credentials_are_refused(
    sshd: Sshd, tmp_path: Path, overrides: dict[str, Any], error: str
) -> None:
    before = len(sshd.commands)
    outcome, _ = await run_job(
        tmp_path, [_exec("x", sshd, "touch should-not-exist", **overrides)], secrets=_secrets(sshd)
    )
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert error in outcome.error
    assert f"{USER}@127.0.0.1" in outcome.error
    assert len(sshd.commands) == before
    assert not (sshd.home / "should-not-exist").exists()


async def test_host_key_checking_is_off_only_when_asked(sshd: Sshd, tmp_path: Path) -> None:
    outcome, _ = await run_job(
        tmp_path,
        [_exec("x", sshd, "echo trusting", known_hosts_secret=None, insecure_skip_host_key_check=True)],
        secrets=_secrets(sshd),
    )
    assert outcome.status == "succeeded", outcome
    refused, _ = await run_job(tmp_path, [_exec("x", sshd, "echo x", known_hosts_secret=None)], secrets=_secrets(sshd))
    assert refused.permanent
    assert refused.error is not None
    assert "host keys are checked" in refused.error


async def test_sftp_upload_and_download(sshd: Sshd, tmp_path: Path) -> None:
    name = f"up-{uuid.uuid4().hex[:8]}"
    payload = "line one\nline two ${{ parameters.n }}\n"
    outcome, _ = await run_job(
        tmp_path,
        [
            {
                "name": "make",
                "type": "shell",
                "config": {"command": ["sh", "-c", "head -c 300000 /dev/urandom > blob"]},
            },
            {
                "name": "up_text",
                "type": "sftp.upload",
                "config": {**_conn(sshd), "content": payload, "remote_path": f"/{name}.txt", "mode": "0600"},
            },
            {
                "name": "up_file",
                "type": "sftp.upload",
                "config": {**_conn(sshd), "local_path": "blob", "remote_path": f"/{name}.bin"},
            },
            {
                "name": "down",
                "type": "sftp.download",
                "config": {**_conn(sshd), "remote_path": f"/{name}.bin", "local_path": "copies/blob"},
            },
            {"name": "sum", "type": "shell", "config": {"command": ["sha256sum", "blob", "copies/blob"]}},
        ],
        secrets=_secrets(sshd),
        parameters={"n": 2},
    )
    assert outcome.status == "succeeded", outcome
    text = (sshd.home / f"{name}.txt").read_bytes()
    assert text == b"line one\nline two 2\n"
    assert (sshd.home / f"{name}.txt").stat().st_mode & 0o777 == 0o600
    assert outcome.outputs["up_text"] == {
        "bytes": len(text),
        "sha256": hashlib.sha256(text).hexdigest(),
        "path": f"/{name}.txt",
    }
    blob = (sshd.home / f"{name}.bin").read_bytes()
    assert len(blob) == 300000
    digest = hashlib.sha256(blob).hexdigest()
    assert outcome.outputs["up_file"]["sha256"] == digest
    assert outcome.outputs["down"] == {"bytes": 300000, "sha256": digest, "path": "copies/blob"}
    sums = outcome.outputs["sum"]["stdout_tail"].split()
    assert sums == [digest, "blob", digest, "copies/blob"]


async def test_sftp_errors_fail_the_step(sshd: Sshd, tmp_path: Path) -> None:
    missing, _ = await run_job(
        tmp_path,
        [{"name": "d", "type": "sftp.download", "config": {**_conn(sshd), "remote_path": "/nope", "local_path": "x"}}],
        secrets=_secrets(sshd),
    )
    assert missing.status == "failed"
    assert missing.error is not None
    assert "sftp download of /nope" in missing.error
    escape, _ = await run_job(
        tmp_path,
        [
            {"name": "link", "type": "shell", "config": {"command": ["ln", "-s", "/etc", "out"]}},
            {
                "name": "d",
                "type": "sftp.download",
                "config": {**_conn(sshd), "remote_path": "/anything", "local_path": "out/passwd"},
            },
        ],
        secrets=_secrets(sshd),
    )
    assert escape.status == "failed"
    assert escape.error is not None
    assert "leads outside the working directory" in escape.error


async def test_injection_reaches_the_remote_shell_as_one_literal_word(sshd: Sshd, tmp_path: Path) -> None:
    marker = sshd.home / f"pwned-{uuid.uuid4().hex}"
    values = injection_values(str(marker))
    steps: list[dict[str, Any]] = []
    for name in values:
        v = "${{ parameters." + name + " }}"
        steps += [
            _exec(f"echo_{name}", sshd, f"printf '%s\\n' {v}"),
            {
                "name": f"up_{name}",
                "type": "sftp.upload",
                "config": {**_conn(sshd), "content": v, "remote_path": f"/literal-{name}.txt"},
            },
        ]
    outcome, _ = await run_job(tmp_path, steps, secrets=_secrets(sshd), parameters=values)
    assert outcome.status == "succeeded", outcome
    for name, value in values.items():
        assert outcome.outputs[f"echo_{name}"]["stdout_tail"] == f"{value}\n"
        sent = f"automation_value_0={shlex.quote(value)}; printf '%s\\n' \"${{automation_value_0}}\""
        assert sent in sshd.commands, "the value goes as a variable's quoted content, referenced as one word"
        assert (sshd.home / f"literal-{name}.txt").read_text() == value
    assert not marker.exists()
