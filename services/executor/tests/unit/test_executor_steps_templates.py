"""Secrets, check payloads and PowerShell in templates; reading a check's decision."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from automation_executor.domain.check import NO_DECISION, CheckError, check_decision
from automation_executor.domain.templates import (
    TemplateContext,
    TemplateError,
    render_json,
    render_powershell,
    render_text,
    render_url,
    secret_names,
)

INJECTIONS = ["; rm -rf / #", "$(touch /tmp/pwned)", "`id`", "' OR 1=1 --", '"; Remove-Item C:\\ -Recurse; "']


def _ctx(**parameters: Any) -> TemplateContext:
    return TemplateContext(
        parameters=parameters, secrets={"API_TOKEN": "tok"}, check_payload={"pending": 3, "sites": ["a"]}
    )


def test_secrets_and_check_payload_namespaces() -> None:
    ctx = _ctx()
    assert render_text("Bearer ${{ secrets.API_TOKEN }}", ctx) == "Bearer tok"
    assert render_text("${{ check.payload.pending }}", ctx) == "3"
    assert render_json({"n": "${{ check.payload.pending }}", "all": "${{ check.payload }}"}, ctx) == {
        "n": 3,
        "all": {"pending": 3, "sites": ["a"]},
    }
    assert secret_names("${{ secrets.A }} and ${{secrets.B_2}} ${{ parameters.x }}") == {"A", "B_2"}
    with pytest.raises(TemplateError, match="'OTHER' was not resolved"):
        render_text("${{ secrets.OTHER }}", ctx)
    with pytest.raises(TemplateError, match="capitals"):
        render_text("${{ secrets.a.b }}", ctx)
    with pytest.raises(TemplateError, match=r"check\.payload"):
        render_text("${{ check.output }}", ctx)
    with pytest.raises(TemplateError, match="no check step"):
        render_text("${{ check.payload.pending }}", TemplateContext(parameters={}))


def _decode_preamble(script: str) -> dict[str, str]:
    found = re.findall(r"\$\{(automation_value_\d+)\} = .*FromBase64String\('([A-Za-z0-9+/=]*)'\)\)", script)
    return {name: base64.b64decode(b64).decode("utf-8") for name, b64 in found}


@pytest.mark.parametrize("value", INJECTIONS)
def test_powershell_values_never_become_code(value: str) -> None:
    script = render_powershell(
        'Write-Output ${{ parameters.x }}\nWrite-Output "n=${{ parameters.n }}"', _ctx(x=value, n=2)
    )
    lines = script.splitlines()
    assert lines[2:] == ["Write-Output ${automation_value_0}", 'Write-Output "n=${automation_value_1}"']
    assert value not in script  # only its base64 travels
    assert _decode_preamble("\n".join(lines[:2])) == {"automation_value_0": value, "automation_value_1": "2"}
    assert render_powershell("Get-Date", _ctx()) == "Get-Date"


@pytest.mark.parametrize(
    ("output", "decision"),
    [
        ({"should_perform": True, "perform_payload": {"n": 1}}, (True, {"n": 1})),
        ({"should_perform": False}, (False, {})),
        ({"status": 200, "body": {"should_perform": True, "perform_payload": {"a": "b"}}}, (True, {"a": "b"})),
        ({"exit_code": 0, "stdout_tail": 'noise\n{"should_perform": false}\n\n'}, (False, {})),
    ],
)
def test_check_decisions(output: Any, decision: tuple[bool, dict[str, Any]]) -> None:
    assert check_decision(output) == decision


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (None, NO_DECISION),
        ({"exit_code": 0, "stdout_tail": "not json"}, NO_DECISION),
        ({"should_perform": "yes"}, "must be true or false"),
        ({"should_perform": True, "perform_payload": [1]}, "must be an object"),
    ],
)
def test_check_without_a_decision_is_an_error(output: Any, message: str) -> None:
    with pytest.raises(CheckError) as caught:
        check_decision(output)
    assert message in str(caught.value)


def test_a_url_starting_with_a_template_takes_it_as_its_base() -> None:
    ctx = _ctx(base="https://intranet.example:8443/app", page="a/../b?c")
    assert render_url("${{ parameters.base }}/login/${{ parameters.page }}", ctx) == (
        "https://intranet.example:8443/app/login/a%2F..%2Fb%3Fc"
    )
    assert render_url("${{ parameters.base }}", ctx) == "https://intranet.example:8443/app"
    assert (
        render_url("https://x/${{ parameters.base }}", ctx) == "https://x/https%3A%2F%2Fintranet.example%3A8443%2Fapp"
    )
