"""Template substitution: ``${{ parameters.x }}``, ``${{ steps.<name>.output.<path> }}``, ``${{ event.<path> }}``,
``${{ secrets.NAME }}`` and ``${{ check.payload.<path> }}``.

Values are only ever inserted as data, never as code:

- :func:`render_text` (argv elements, header values, environment values, raw bodies): the value becomes
  literal text inside the one string it was written in; an argv element stays one argument.
- :func:`render_url`: a value inside a URL is percent-encoded, so it cannot add path segments, a query or
  a host; a template at the very start of the URL (or a URL that is exactly one template) is its base and
  takes the value as it is.
- :func:`render_json`: every string of a JSON document is rendered as text; a string that is exactly one
  template takes the value with its JSON type (number, object, ...).
- :func:`render_shell` (``"shell": true`` commands, ``ssh.exec`` commands): values never enter the
  script as code. Each template becomes a double-quoted reference to a shell variable
  (``"${automation_value_0}"``), assigned the ``shlex.quote``-d value on the script's first line. A
  variable's content is never parsed again by the shell, wherever the reference stands, so a value
  cannot run even where the script's own quoting is not what it looks like (a ``"$( … "…" … )"`` nest,
  ``$'…'``, which dash does not have). Templates are still refused where a value has no clear meaning
  (inside quotes, comments, backquotes, arithmetic, after ``\\`` or ``$``, or in a script with a
  here-document: :func:`automation_contracts.steps.check_shell_script`).
- :func:`render_powershell` (``winrm.exec`` scripts): values never enter the script text at all; each
  template becomes a PowerShell variable (``${automation_value_0}``) assigned, in a preamble, from the
  base64 of the value's UTF-8 bytes. The variable's content is data wherever it is used.

Secrets are looked up in :attr:`TemplateContext.secrets`, which the child fills (from the executor)
before a step runs; the check step's ``perform_payload`` is :attr:`TemplateContext.check_payload`.

Substitution is one pass: a value that itself contains ``${{ ... }}`` stays literal. Non-string values
are rendered as JSON text (``true``, ``3``, ``{"a": 1}``). A reference to something that does not exist
is a :class:`TemplateError`, never an empty string. The grammar (what a template may be) is
:mod:`automation_contracts.steps.templates`, shared with job-api.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from automation_contracts.steps.shell_script import check_shell_script
from automation_contracts.steps.templates import (
    ROOTS,
    SECRET_NAME,
    TEMPLATE,
    TemplateError,
    parse_expression,
    parse_templates,
    written,
)

__all__ = [
    "ROOTS",
    "SECRET_NAME",
    "TEMPLATE",
    "TemplateContext",
    "TemplateError",
    "check_shell_script",
    "parse_expression",
    "render_json",
    "render_powershell",
    "render_shell",
    "render_text",
    "render_url",
    "secret_names",
    "to_text",
]
VARIABLE = "automation_value_"
"""The name prefix of the variables a shell or PowerShell script's templates become (``automation_value_0``)."""


@dataclass
class TemplateContext:
    """What templates can read: parameters, earlier steps' outputs, the triggering event, secrets, the check.

    ``secrets`` holds the values resolved so far (the child asks the executor for each one a step needs
    before the step runs); ``check_payload`` is None when the job has no check step.
    """

    parameters: Mapping[str, Any]
    steps: dict[str, Any] = field(default_factory=dict)
    event: Mapping[str, Any] | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    check_payload: Mapping[str, Any] | None = None

    def lookup(self, expression: str) -> Any:
        """The value an expression names; :class:`TemplateError` when there is none."""
        parts = parse_expression(expression)
        root, rest = parts[0], parts[1:]
        if root == "parameters":
            return _walk(self.parameters, rest, expression)
        if root == "event":
            if self.event is None:
                raise TemplateError(f"{written(expression)}: this run was not triggered by an event")
            return _walk(self.event, rest, expression)
        if root == "secrets":
            if rest[0] not in self.secrets:
                raise TemplateError(f"{written(expression)}: secret {rest[0]!r} was not resolved")
            return self.secrets[rest[0]]
        if root == "check":
            if self.check_payload is None:
                raise TemplateError(f"{written(expression)}: this job has no check step")
            return _walk(self.check_payload, rest[1:], expression)
        name = rest[0]
        if name not in self.steps:
            raise TemplateError(f"{written(expression)}: step {name!r} has no output (yet)")
        return _walk(self.steps[name], rest[2:], expression)


def secret_names(text: str) -> set[str]:
    """The secret names ``text`` refers to with ``${{ secrets.NAME }}`` (raises on a malformed template)."""
    return {ref.parts[1] for ref in parse_templates(text) if ref.root == "secrets"}


def _walk(value: Any, path: Sequence[str], expression: str) -> Any:
    current = value
    for part in path:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise TemplateError(f"{written(expression)}: no value at {part!r}")
    return current


def to_text(value: Any) -> str:
    """A value as the text a template inserts: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _substitute(template: str, ctx: TemplateContext, convert: Callable[[Any], str]) -> str:
    return TEMPLATE.sub(lambda m: convert(ctx.lookup(m.group(1))), template)


def render_text(template: str, ctx: TemplateContext) -> str:
    """Insert values as literal text (argv elements, header and environment values, raw bodies)."""
    return _substitute(template, ctx, to_text)


def render_url(template: str, ctx: TemplateContext) -> str:
    """Insert values into a URL percent-encoded.

    A template at the very start of the URL is its base and is taken as it is (``${{ parameters.base
    }}/login``: scheme, host and perhaps a path); so is a URL that is one template. Every template after
    the start is percent-encoded: it cannot add path segments, a query or a host.
    """
    stripped = template.strip()
    leading = TEMPLATE.match(stripped)
    if leading is None:
        return _substitute(stripped, ctx, lambda v: quote(to_text(v), safe=""))
    rest = stripped[leading.end() :]
    return to_text(ctx.lookup(leading.group(1))) + _substitute(rest, ctx, lambda v: quote(to_text(v), safe=""))


def render_json(value: Any, ctx: TemplateContext) -> Any:
    """Render every string of a JSON value; a string that is exactly one template keeps the value's type."""
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value)
        if whole is not None:
            return ctx.lookup(whole.group(1))
        return render_text(value, ctx)
    if isinstance(value, Mapping):
        return {key: render_json(item, ctx) for key, item in value.items()}
    if isinstance(value, list):
        return [render_json(item, ctx) for item in value]
    return value


def _as_variables(script: str, ctx: TemplateContext, reference: str) -> tuple[str, list[str]]:
    """``script`` with the n-th template replaced by ``reference`` formatted with the variable's name
    (:data:`VARIABLE` and n), and the values, in order, the variables are to hold."""
    values: list[str] = []

    def variable(match: re.Match[str]) -> str:
        values.append(to_text(ctx.lookup(match.group(1))))
        return reference.format(f"{VARIABLE}{len(values) - 1}")

    return TEMPLATE.sub(variable, script), values


def render_shell(script: str, ctx: TemplateContext) -> str:
    """A POSIX shell script with each template replaced by a variable holding the value.

    ``echo ${{ parameters.x }}`` becomes ``automation_value_0='<value>'; echo "${automation_value_0}"``:
    the assignments (each value ``shlex.quote``-d, one single-quoted word) are on the first line, so the
    script's own lines keep their numbers (unless a value has a line break). As a double-quoted
    expansion, the value is one word where the template stood, and is never read as code: not where the
    checker (:func:`check_shell_script`, which runs first) took a quote for another, and not in a shell
    that quotes differently (dash has no ``$'…'``). The variables are not exported.
    """
    check_shell_script(script)
    body, values = _as_variables(script, ctx, '"${{{}}}"')
    if not values:
        return script
    return " ".join(f"{VARIABLE}{index}={shlex.quote(value)};" for index, value in enumerate(values)) + " " + body


def render_powershell(script: str, ctx: TemplateContext) -> str:
    """A PowerShell script with each template replaced by a variable holding the value.

    The values are assigned in a preamble from base64 (``[Convert]::FromBase64String('...')``), so no
    value ever becomes PowerShell code or breaks a quote, wherever the template stands. Inside a
    double-quoted string the variable expands to the value; inside single quotes it stays literal
    (``${automation_value_0}``), as any variable would.
    """
    body, values = _as_variables(script, ctx, "${{{}}}")
    preamble = "".join(
        "${"
        + f"{VARIABLE}{index}"
        + "} = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String('"
        + base64.b64encode(value.encode("utf-8")).decode("ascii")
        + "'))\n"
        for index, value in enumerate(values)
    )
    return preamble + body
