"""Template substitution: values are data, never code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from automation_executor.domain.templates import (
    TemplateContext,
    TemplateError,
    check_shell_script,
    render_json,
    render_shell,
    render_text,
    render_url,
)

INJECTIONS = [
    "; rm -rf / #",
    "$(touch /tmp/x)",
    "`touch /tmp/x`",
    "a' ; touch /tmp/x ; echo '",
    'a" ; touch /tmp/x ; echo "',
    "line1\nrm -rf /",
    "\\",
    "${{ parameters.other }}",
    "-rf",
    "",
]


def _ctx(**parameters: Any) -> TemplateContext:
    return TemplateContext(
        parameters=parameters,
        steps={"fetch": {"status": 200, "body": {"items": [{"id": "a1"}], "ok": True}}},
        event={"data": {"site": "fra1"}},
    )


def test_lookups_in_every_namespace() -> None:
    ctx = _ctx(site="fra1", count=3)
    assert render_text("${{ parameters.site }}", ctx) == "fra1"
    assert render_text("n=${{parameters.count}}", ctx) == "n=3"
    assert render_text("${{ steps.fetch.output.body.items.0.id }}", ctx) == "a1"
    assert render_text("${{ steps.fetch.output.body.ok }}", ctx) == "true"
    assert render_text("${{ steps.fetch.output.body }}", ctx) == '{"items":[{"id":"a1"}],"ok":true}'
    assert render_text("${{ event.data.site }}", ctx) == "fra1"
    assert render_text("no templates ${ here }", ctx) == "no templates ${ here }"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${{ parameters.missing }}", "no value at 'missing'"),
        ("${{ steps.later.output.x }}", "step 'later' has no output"),
        ("${{ steps.fetch.status }}", "steps.<name>.output"),
        ("${{ vault.TOKEN }}", "unknown root 'vault'"),
        ("${{ 1 + 1 }}", "not a template expression"),
        ("${{ parameters }}", "not a template expression"),
        ("${{ steps.fetch.output.body.items.5 }}", "no value at '5'"),
    ],
)
def test_bad_references_are_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(".", r"\.")):
        render_text(template, _ctx())


def test_event_namespace_needs_an_event() -> None:
    with pytest.raises(TemplateError, match="not triggered by an event"):
        render_text("${{ event.data.x }}", TemplateContext(parameters={}))


@pytest.mark.parametrize("value", INJECTIONS)
def test_argv_elements_and_text_stay_literal(value: str) -> None:
    ctx = _ctx(x=value, other="SHOULD-NOT-APPEAR")
    assert render_text("${{ parameters.x }}", ctx) == value
    assert render_text("--name=${{ parameters.x }}", ctx) == f"--name={value}"


SHELLS = [shell for shell in ("/bin/sh", "/bin/dash", "/bin/bash") if os.path.exists(shell)]


def _run_shell(shell: str, script: str, cwd: Path) -> str:
    done = subprocess.run([shell, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    return done.stdout


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("value", [*INJECTIONS, "$(touch marker)", "`touch marker`", "; touch marker #"])
def test_shell_strings_give_the_value_as_one_word_and_run_nothing_of_it(value: str, shell: str, tmp_path: Path) -> None:
    ctx = _ctx(x=value, other="SHOULD-NOT-APPEAR")
    script = render_shell("printf '<%s>\\n' ${{ parameters.x }} | cat", ctx)
    assert script.startswith("automation_value_0=")
    assert _run_shell(shell, script, tmp_path) == f"<{value}>\n"
    assert list(tmp_path.iterdir()) == [], "nothing the value said was run"
    assert "SHOULD-NOT-APPEAR" not in script


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "script",
    [
        # the checker takes the inner "…" for the end of the outer quotes: the template looks like a word
        'echo "$(echo "${{ parameters.x }}")"',
        # bash's $'…' quoting, which dash does not have: in dash the quote state is the other way round
        "echo $'\\'' ${{ parameters.x }}",
    ],
)
def test_a_template_the_checker_misplaces_still_runs_nothing(script: str, shell: str, tmp_path: Path) -> None:
    """Found by hand: both passed the checker, and with values pasted in as quoted words, each value ran.
    As variables, a value is never read as code, wherever the script's quoting puts it."""
    check_shell_script(script)
    for value in ("$(touch marker-a)", ";touch marker-b #", "`touch marker-c`"):
        _run_shell(shell, render_shell(script, _ctx(x=value)), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_shell_values_keep_the_scripts_line_numbers() -> None:
    rendered = render_shell("true\nfalse ${{ parameters.x }} ${{ parameters.x }}", _ctx(x="v"))
    first, second = rendered.split("\n")
    assert first == "automation_value_0=v; automation_value_1=v; true"
    assert second == 'false "${automation_value_0}" "${automation_value_1}"'
    assert render_shell("echo plain", _ctx(x="v")) == "echo plain"


@pytest.mark.parametrize(
    ("script", "where"),
    [
        ('echo "${{ parameters.x }}"', "double quotes"),
        ("echo '${{ parameters.x }}'", "single quotes"),
        ("echo hi # ${{ parameters.x }}", "comment"),
        ("echo `echo ${{ parameters.x }}`", "backquotes"),
        ("echo $'a ${{ parameters.x }}'", "quotes"),
        ("echo $(( ${{ parameters.x }} + 1 ))", "arithmetic"),
        ("echo \\${{ parameters.x }}", "escaped|follows"),
        ("echo $${{ parameters.x }}", "follows '\\$'"),
        ("cat <<EOF\n${{ parameters.x }}\nEOF", "here-document"),
    ],
)
def test_shell_templates_in_unsafe_places_are_refused(script: str, where: str) -> None:
    with pytest.raises(TemplateError, match=where):
        check_shell_script(script)


@pytest.mark.parametrize(
    "script",
    [
        "echo ${{ parameters.x }}",
        "cmd --name=${{ parameters.x }} && echo 'done' # ok",
        'echo "quoted" ${{ parameters.x }} "$HOME"',
        "echo $(echo ${{ parameters.x }})",
        'x=${{ parameters.x }}; echo "$x"',
        "echo a#${{ parameters.x }}",
    ],
)
def test_shell_templates_as_words_are_accepted(script: str) -> None:
    check_shell_script(script)
    rendered = render_shell(script, _ctx(x="; rm -rf / #"))
    assert rendered.startswith("automation_value_0='; rm -rf / #'; ")
    assert "${{" not in rendered


def test_urls_encode_values_unless_the_template_is_the_whole_url() -> None:
    ctx = _ctx(site="fra1/../admin?x=1#f", url="https://example.org/a?b=c")
    assert render_url("https://h/api/${{ parameters.site }}", ctx) == "https://h/api/fra1%2F..%2Fadmin%3Fx%3D1%23f"
    assert render_url("https://h/q?s=${{ parameters.site }}", ctx) == "https://h/q?s=fra1%2F..%2Fadmin%3Fx%3D1%23f"
    assert render_url(" ${{ parameters.url }} ", ctx) == "https://example.org/a?b=c"


def test_json_keeps_types_of_whole_templates_and_text_elsewhere() -> None:
    ctx = _ctx(n=3, name="; rm -rf / #")
    body = {
        "count": "${{ parameters.n }}",
        "label": "n=${{ parameters.n }}",
        "nested": [{"who": "${{ parameters.name }}"}, 7, None],
        "${{ parameters.name }}": "keys are not templates",
    }
    assert render_json(body, ctx) == {
        "count": 3,
        "label": "n=3",
        "nested": [{"who": "; rm -rf / #"}, 7, None],
        "${{ parameters.name }}": "keys are not templates",
    }


def test_substitution_is_one_pass() -> None:
    ctx = _ctx(x="${{ parameters.y }}", y="secret")
    assert render_text("${{ parameters.x }}", ctx) == "${{ parameters.y }}"
    assert render_json({"a": "${{ parameters.x }}"}, ctx) == {"a": "${{ parameters.y }}"}
