"""winrm.exec and winrm.copy against a WS-Management responder on 127.0.0.1 over HTTPS (basic and NTLM).

What the responder covers is described in ``executor_steps_wsman``: the WinRS SOAP operations pywinrm
uses, real Basic and NTLM authentication, TLS with a test CA; it interprets, not runs, PowerShell.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import winrm

sys.path.insert(0, str(Path(__file__).parent / "steps-support"))

from executor_steps_support import forked_children, injection_values, run_job
from executor_steps_wsman import PASSWORD, USER, Wsman, running_wsman, temporary_ca_file

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def _forked() -> AsyncIterator[None]:
    async with forked_children():
        yield


@pytest.fixture(scope="module")
def wsman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wsman]:
    with running_wsman(tmp_path_factory.mktemp("wsman")) as responder:
        yield responder


def _secrets(wsman: Wsman) -> dict[str, str]:
    return {"WIN_PASSWORD": PASSWORD, "WIN_CA": wsman.ca_pem, "BAD_PASSWORD": "wrong"}


def _conn(wsman: Wsman, **overrides: Any) -> dict[str, Any]:
    return {
        "endpoint": wsman.endpoint,
        "username": USER,
        "password_secret": "WIN_PASSWORD",
        "ca_secret": "WIN_CA",
        **overrides,
    }


def _exec(name: str, wsman: Wsman, script: str, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "type": "winrm.exec", "config": {**_conn(wsman, **overrides), "script": script}}


async def test_the_responder_answers_pywinrm_itself(wsman: Wsman) -> None:
    ca_file = temporary_ca_file(wsman.ca_pem)
    try:

        def talk() -> tuple[winrm.Response, winrm.Response, winrm.Response]:
            session = winrm.Session(
                wsman.endpoint, auth=(USER, PASSWORD), transport="ntlm", ca_trust_path=ca_file, proxy=None
            )
            basic = winrm.Session(
                wsman.endpoint, auth=(USER, PASSWORD), transport="basic", ca_trust_path=ca_file, proxy=None
            )
            return session.run_ps("Write-Output 'from run_ps'"), session.run_cmd("echo hello"), basic.run_cmd("ver")

        ps, cmd, unknown = await asyncio.to_thread(talk)
    finally:
        os.unlink(ca_file)
    assert (ps.status_code, ps.std_out) == (0, b"from run_ps\r\n")
    assert (cmd.status_code, cmd.std_out) == (0, b"hello\r\n")
    assert unknown.status_code == 1
    assert b"is not recognized" in unknown.std_err
    assert {"ntlm", "basic"} <= set(wsman.state.authenticated)


async def test_exec_streams_output_and_cleans_up(wsman: Wsman, tmp_path: Path) -> None:
    before = len(wsman.state.scripts)
    outcome, sink = await run_job(
        tmp_path,
        [
            _exec("ntlm", wsman, "Write-Output 'hello from windows'\nWrite-Output ${{ parameters.site }}"),
            _exec(
                "basic",
                wsman,
                "Start-Sleep -Seconds 2\nWrite-Error 'disk almost full'\nexit 4",
                transport="basic",
                expected_exit_codes=[4],
            ),
        ],
        secrets=_secrets(wsman),
        parameters={"site": "fra1"},
    )
    assert outcome.status == "succeeded", outcome
    assert outcome.outputs["ntlm"] == {
        "exit_code": 0,
        "stdout_tail": "hello from windows\r\nfra1\r\n",
        "stderr_tail": "",
    }
    assert ("stdout", "ntlm", "hello from windows") in sink.lines
    assert outcome.outputs["basic"]["exit_code"] == 4
    assert outcome.outputs["basic"]["stderr_tail"] == "disk almost full"  # CLIXML turned into its text
    assert ("stderr", "basic", "disk almost full") in sink.lines
    assert len(wsman.state.scripts) == before + 2
    assert wsman.state.shells == {}  # every shell deleted
    assert wsman.state.signals.count("terminate") >= 2
    assert "65001" in wsman.state.codepages
    assert PASSWORD not in sink.text()


async def test_failures_are_clear(wsman: Wsman, tmp_path: Path) -> None:
    exit_code, _ = await run_job(tmp_path, [_exec("x", wsman, "exit 2")], secrets=_secrets(wsman))
    assert exit_code.status == "failed"
    assert exit_code.error == "step x: exit code 2; expected 0"
    bad_password, _ = await run_job(
        tmp_path, [_exec("x", wsman, "exit 0", password_secret="BAD_PASSWORD")], secrets=_secrets(wsman)
    )
    assert bad_password.status == "failed"
    assert bad_password.error is not None
    assert "credentials were rejected" in bad_password.error
    plain, _ = await run_job(
        tmp_path,
        [_exec("x", wsman, "exit 0", endpoint="${{ parameters.endpoint }}")],
        secrets=_secrets(wsman),
        parameters={"endpoint": wsman.endpoint.replace("https://", "http://")},
    )
    assert plain.error is not None
    assert "endpoint must be https://" in plain.error
    kerberos, _ = await run_job(tmp_path, [_exec("x", wsman, "exit 0", transport="kerberos")], secrets=_secrets(wsman))
    assert kerberos.error is not None
    assert "kerberos transport is not available" in kerberos.error


async def test_certificates_are_validated_unless_told_otherwise(wsman: Wsman, tmp_path: Path) -> None:
    system_cas, _ = await run_job(tmp_path, [_exec("x", wsman, "exit 0", ca_secret=None)], secrets=_secrets(wsman))
    assert system_cas.status == "failed"
    assert system_cas.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in system_cas.error
    ignored, _ = await run_job(
        tmp_path,
        [_exec("x", wsman, "Write-Output 'ok'", ca_secret=None, server_cert_validation="ignore")],
        secrets=_secrets(wsman),
    )
    assert ignored.status == "succeeded", ignored


async def test_copy_in_chunks_with_the_hash_checked(wsman: Wsman, tmp_path: Path) -> None:
    target = f"C:\\Temp\\drop-{uuid.uuid4().hex[:8]}.bin"
    outcome, _ = await run_job(
        tmp_path,
        [
            {"name": "make", "type": "shell", "config": {"command": ["sh", "-c", "head -c 20000 /dev/urandom > blob"]}},
            {
                "name": "copy",
                "type": "winrm.copy",
                "config": {**_conn(wsman), "local_path": "blob", "remote_path": target},
            },
            {
                "name": "text",
                "type": "winrm.copy",
                "config": {**_conn(wsman), "content": "site=${{ parameters.site }}\n", "remote_path": target + ".txt"},
            },
            {"name": "sum", "type": "shell", "config": {"command": ["sha256sum", "blob"]}},
        ],
        secrets=_secrets(wsman),
        parameters={"site": "fra1"},
    )
    assert outcome.status == "succeeded", outcome
    copied = wsman.state.files[target]
    digest = hashlib.sha256(copied).hexdigest()
    assert len(copied) == 20000
    assert outcome.outputs["sum"]["stdout_tail"].split()[0] == digest
    assert outcome.outputs["copy"] == {"bytes": 20000, "sha256": digest, "path": target}
    assert wsman.state.files[target + ".txt"] == b"site=fra1\n"


async def test_a_copy_that_arrives_damaged_fails(wsman: Wsman, tmp_path: Path) -> None:
    wsman.state.corrupt_files = True
    try:
        outcome, _ = await run_job(
            tmp_path,
            [
                {
                    "name": "copy",
                    "type": "winrm.copy",
                    "config": {**_conn(wsman), "content": "x", "remote_path": "C:\\x"},
                }
            ],
            secrets=_secrets(wsman),
        )
    finally:
        wsman.state.corrupt_files = False
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "has SHA-256" in outcome.error


async def test_injection_reaches_powershell_as_data(wsman: Wsman, tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    values = injection_values(str(marker)) | {
        "ps0": '"; Remove-Item -Recurse C:\\ ; "',
        "ps1": "$(Remove-Item C:\\)",
        "ps2": "\u2019; Remove-Item C:\\ #",  # PowerShell also ends a quote at a curly one
    }
    steps: list[dict[str, Any]] = []
    for name in values:
        v = "${{ parameters." + name + " }}"
        steps += [
            _exec(f"echo_{name}", wsman, f'Write-Output {v}\nWrite-Output "quoted: {v}"'),
            {
                "name": f"copy_{name}",
                "type": "winrm.copy",
                "config": {**_conn(wsman), "content": v, "remote_path": "C:\\" + v},
            },
        ]
    before = len(wsman.state.scripts)
    outcome, _ = await run_job(tmp_path, steps, secrets=_secrets(wsman), parameters=values)
    assert outcome.status == "succeeded", outcome
    scripts = wsman.state.scripts[before:]
    for name, value in values.items():
        assert outcome.outputs[f"echo_{name}"]["stdout_tail"] == f"{value}\r\nquoted: {value}\r\n"
        script = next(s for s in scripts if "quoted:" in s and _decoded_values(s) == {value})
        assert value not in script  # the value travels as base64 only
        assert wsman.state.files["C:\\" + value] == value.encode()
    assert not marker.exists()


def _decoded_values(script: str) -> set[str]:
    return {base64.b64decode(e).decode() for e in re.findall(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)", script)}
