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
- :func:`render_shell` (only for ``"shell": true`` steps): each value is ``shlex.quote``-d into one shell
  word, and templates are refused where quoting would not protect them (inside quotes, comments,
  backquotes, arithmetic, after ``\\`` or ``$``, or in a script with a here-document).
- :func:`render_powershell` (``winrm.exec`` scripts): values never enter the script text at all; each
  template becomes a PowerShell variable (``${automation_value_0}``) assigned, in a preamble, from the
  base64 of the value's UTF-8 bytes. The variable's content is data wherever it is used.

Secrets are looked up in :attr:`TemplateContext.secrets`, which the child fills (from the executor)
before a step runs; the check step's ``perform_payload`` is :attr:`TemplateContext.check_payload`.

Substitution is one pass: a value that itself contains ``${{ ... }}`` stays literal. Non-string values
are rendered as JSON text (``true``, ``3``, ``{"a": 1}``). A reference to something that does not exist
is a :class:`TemplateError`, never an empty string.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
EXPRESSION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+)\s*$")
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
"""A secret's name, as job-api accepts it (``DB_PASSWORD``)."""
NAMESPACES = ("parameters", "steps", "event", "secrets", "check")
POWERSHELL_VARIABLE = "automation_value_"
_WORD_BREAKS = frozenset(" \t\n;&|()<>")


class TemplateError(ValueError):
    """A template cannot be rendered (bad expression, unknown reference, unsafe place)."""


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
                raise TemplateError(f"${{{{ {expression} }}}}: this run was not triggered by an event")
            return _walk(self.event, rest, expression)
        if root == "secrets":
            if rest[0] not in self.secrets:
                raise TemplateError(f"${{{{ {expression.strip()} }}}}: secret {rest[0]!r} was not resolved")
            return self.secrets[rest[0]]
        if root == "check":
            if self.check_payload is None:
                raise TemplateError(f"${{{{ {expression.strip()} }}}}: this job has no check step")
            return _walk(self.check_payload, rest[1:], expression)
        name = rest[0]
        if name not in self.steps:
            raise TemplateError(f"${{{{ {expression} }}}}: step {name!r} has no output (yet)")
        return _walk(self.steps[name], rest[2:], expression)


def parse_expression(expression: str) -> list[str]:
    """Split and check an expression: a known namespace and a dotted path (``steps.x.output...``)."""
    match = EXPRESSION.match(expression)
    if match is None:
        raise TemplateError(f"${{{{{expression}}}}}: not a template expression (expected e.g. parameters.name)")
    parts = match.group(1).split(".")
    if parts[0] not in NAMESPACES:
        raise TemplateError(
            f"${{{{ {match.group(1)} }}}}: unknown namespace {parts[0]!r} (supported: {', '.join(NAMESPACES)})"
        )
    if parts[0] == "steps" and (len(parts) < 3 or parts[2] != "output"):
        raise TemplateError(f"${{{{ {match.group(1)} }}}}: step references read steps.<name>.output[.<path>]")
    if parts[0] == "secrets" and (len(parts) != 2 or not SECRET_NAME.match(parts[1])):
        raise TemplateError(
            f"${{{{ {match.group(1)} }}}}: write secrets.NAME with NAME in capitals, digits and _ (e.g. DB_PASSWORD)"
        )
    if parts[0] == "check" and parts[1] != "payload":
        raise TemplateError(f"${{{{ {match.group(1)} }}}}: the check step's result is read as check.payload[.<path>]")
    return parts


def references(text: str) -> list[list[str]]:
    """The parsed expressions of every template in ``text`` (raises on a malformed one)."""
    return [parse_expression(m.group(1)) for m in TEMPLATE.finditer(text)]


def secret_names(text: str) -> set[str]:
    """The secret names ``text`` refers to with ``${{ secrets.NAME }}`` (raises on a malformed template)."""
    return {parts[1] for parts in references(text) if parts[0] == "secrets"}


def iter_strings(value: Any) -> Iterator[str]:
    """Every string (keys excluded) inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_strings(item)


def _walk(value: Any, path: list[str], expression: str) -> Any:
    current = value
    for part in path:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise TemplateError(f"${{{{ {expression.strip()} }}}}: no value at {part!r}")
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


def render_shell(script: str, ctx: TemplateContext) -> str:
    """Insert values into a ``shell: true`` script as single-quoted words (see :func:`check_shell_script`)."""
    check_shell_script(script)
    return _substitute(script, ctx, lambda v: shlex.quote(to_text(v)))


def render_powershell(script: str, ctx: TemplateContext) -> str:
    """A PowerShell script with each template replaced by a variable holding the value.

    The values are assigned in a preamble from base64 (``[Convert]::FromBase64String('...')``), so no
    value ever becomes PowerShell code or breaks a quote, wherever the template stands. Inside a
    double-quoted string the variable expands to the value; inside single quotes it stays literal
    (``${automation_value_0}``), as any variable would.
    """
    values: list[str] = []

    def variable(match: re.Match[str]) -> str:
        values.append(to_text(ctx.lookup(match.group(1))))
        return "${" + f"{POWERSHELL_VARIABLE}{len(values) - 1}" + "}"

    body = TEMPLATE.sub(variable, script)
    preamble = "".join(
        "${"
        + f"{POWERSHELL_VARIABLE}{index}"
        + "} = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String('"
        + base64.b64encode(value.encode("utf-8")).decode("ascii")
        + "'))\n"
        for index, value in enumerate(values)
    )
    return preamble + body


def check_shell_script(script: str) -> None:
    """Refuse templates placed where a quoted value could still be read as code."""
    matches = list(TEMPLATE.finditer(script))
    if not matches:
        return
    for match in matches:
        parse_expression(match.group(1))
    states, heredoc = _scan_shell(script, {m.start(): m.end() for m in matches})
    if heredoc:
        raise TemplateError("templates cannot be used in a shell script with a here-document (<<)")
    for match in matches:
        where = states.get(match.start(), "escaped text")
        expression = match.group(0)
        if where != "plain":
            raise TemplateError(
                f"{expression} is inside {where} in the shell script; write it as a word of its own"
                " (the value is quoted for you)"
            )
        before = script[match.start() - 1] if match.start() > 0 else ""
        if before in {"\\", "$"}:
            raise TemplateError(f"{expression} follows {before!r} in the shell script; write it as a word of its own")


_CLOSING = {"double quotes": '"', "backquotes": "`", "$'...' quotes": "'"}
_OPENING = {"'": "single quotes", '"': "double quotes", "`": "backquotes"}


class _ShellScanner:
    """A small shell lexer: enough to know, at each template, whether a quoted word is safe there."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.stack: list[str] = []  # open quoting contexts, innermost last; empty means plain
        self.arith_depth = 0
        self.heredoc = False

    def where(self) -> str:
        if self.stack:
            return self.stack[-1]
        return "arithmetic" if self.arith_depth else "plain"

    def scan(self, templates: dict[int, int]) -> dict[int, str]:
        states: dict[int, str] = {}
        i = 0
        while i < len(self.script):
            if i in templates:
                states[i] = self.where()
                i = templates[i]
                continue
            top = self.stack[-1] if self.stack else None
            i = self._quoted(i, top) if top is not None else self._plain(i)
        return states

    def _quoted(self, i: int, top: str) -> int:
        """Advance inside a quote or comment; the next index."""
        c = self.script[i]
        if top == "single quotes":
            if c == "'":
                self.stack.pop()
        elif top == "comment":
            if c == "\n":
                self.stack.pop()
        elif c == "\\":
            return i + 2
        elif c == _CLOSING[top]:
            self.stack.pop()
        return i + 1

    def _plain(self, i: int) -> int:
        """Advance outside any quote; the next index."""
        script, c = self.script, self.script[i]
        if c == "\\":
            return i + 2
        if c in _OPENING:
            self.stack.append(_OPENING[c])
        elif script.startswith("$'", i):
            self.stack.append("$'...' quotes")
            return i + 2
        elif c == "#" and (i == 0 or script[i - 1] in _WORD_BREAKS):
            self.stack.append("comment")
        elif script.startswith("<<", i):
            self.heredoc = True
            return i + 2
        elif script.startswith("((", i):
            self.arith_depth += 2
            return i + 2
        elif self.arith_depth and c in "()":
            self.arith_depth += 1 if c == "(" else -1
        return i + 1


def _scan_shell(script: str, templates: dict[int, int]) -> tuple[dict[int, str], bool]:
    """The quoting state at each template start, and whether the script has a here-document."""
    scanner = _ShellScanner(script)
    states = scanner.scan(templates)
    return states, scanner.heredoc
