"""The ``${{ ... }}`` template grammar of step configs, and what a template may refer to.

Templates are kept as text in job definitions; the executor substitutes them at run time, as data
(argv elements, header values, JSON fields, quoted shell words). This module is the one definition of
their syntax, shared by job-api (which refuses a definition whose templates could never be
substituted) and the executor (which checks again before a run, then renders):

- a template is ``${{`` + a dotted path of ``[A-Za-z0-9_-]`` names, the first an identifier, at least
  two names long + ``}}``; whitespace around the path is allowed; a ``${{`` never closed is an error;
- the root is one of ``parameters``, ``steps``, ``event``, ``secrets``, ``check``;
- ``steps.<name>.output[.<path>]``, ``secrets.<NAME>`` (``^[A-Z][A-Z0-9_]*$``, nothing after it) and
  ``check.payload[.<path>]`` are the only shapes of their roots.

:func:`check_reference` adds what depends on where the template stands (:class:`TemplateScope`): a
declared parameter, an earlier step (never the step itself, and none in the check step), a check
payload only in a job with a check step and not in the check itself, and no secret where the config
is published (``event.emit``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
TEMPLATE_START = "${{"
EXPRESSION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+)\s*$")
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
"""A secret's name (``DB_PASSWORD``): what ``*_secret`` fields and ``${{ secrets.NAME }}`` hold."""
ROOTS = ("parameters", "steps", "event", "secrets", "check")


class TemplateError(ValueError):
    """A template that cannot be substituted (bad syntax, unknown root, out of scope); the message says why."""


@dataclass(frozen=True, slots=True)
class Reference:
    """One parsed template: its text as written and the dotted path inside it."""

    text: str
    parts: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.parts[0]


@dataclass(frozen=True, slots=True)
class TemplateScope:
    """What the templates of one step may refer to.

    ``parameters``: the names the job's schema declares, or None where they are not checked;
    ``earlier_steps``: names of the steps before this one; ``step_name``: this step's own name;
    ``has_check``: the job has a check step; ``in_check``: this is the check step;
    ``secrets_allowed``: False where a value would be published (``event.emit``).
    """

    parameters: frozenset[str] | None = None
    earlier_steps: frozenset[str] = frozenset()
    step_name: str = ""
    has_check: bool = False
    in_check: bool = False
    secrets_allowed: bool = True


def written(expression: str) -> str:
    """An expression as a template (``${{ parameters.x }}``), for messages."""
    return "${{ " + expression.strip() + " }}"


def parse_expression(expression: str) -> tuple[str, ...]:
    """The dotted path of one template's inside; :class:`TemplateError` unless it has a valid shape."""
    match = EXPRESSION.match(expression)
    if match is None:
        raise TemplateError(
            f"{written(expression)} is not a template expression; write e.g. ${{{{ parameters.name }}}}"
            f" (a dotted path under {', '.join(ROOTS)})"
        )
    parts = tuple(match.group(1).split("."))
    text = written(match.group(1))
    root = parts[0]
    if root not in ROOTS:
        raise TemplateError(f"{text}: unknown root {root!r} (known: {', '.join(ROOTS)})")
    if root == "steps" and (len(parts) < 3 or parts[2] != "output"):
        raise TemplateError(f"{text}: a step's result is read as steps.<name>.output[.<path>]")
    if root == "secrets" and (len(parts) != 2 or not SECRET_NAME.match(parts[1])):
        raise TemplateError(f"{text}: write secrets.NAME with NAME in capitals, digits and _ (e.g. DB_PASSWORD)")
    if root == "check" and parts[1] != "payload":
        raise TemplateError(f"{text}: the check step's result is read as check.payload[.<path>]")
    return parts


def parse_templates(text: str) -> list[Reference]:
    """Every template of ``text``, parsed; :class:`TemplateError` for a malformed or unclosed one."""
    references = [Reference(m.group(0), parse_expression(m.group(1))) for m in TEMPLATE.finditer(text)]
    if TEMPLATE_START in TEMPLATE.sub("", text):
        raise TemplateError("a template opened with ${{ is never closed with }}")
    return references


def contains_template(text: str) -> bool:
    """Whether ``text`` holds a template (its value is only known at run time)."""
    return TEMPLATE_START in text


def check_reference(ref: Reference, scope: TemplateScope) -> None:
    """Raise :class:`TemplateError` unless ``ref`` can be substituted in ``scope``."""
    root, rest = ref.root, ref.parts[1:]
    if root == "parameters":
        if scope.parameters is not None and rest[0] not in scope.parameters:
            raise TemplateError(
                f"{ref.text}: parameter {rest[0]!r} is not declared in the job's parameters schema (properties)"
            )
    elif root == "steps":
        name = rest[0]
        if scope.in_check:
            raise TemplateError(f"{ref.text}: the check step runs before every step and cannot read their output")
        if name == scope.step_name:
            raise TemplateError(f"{ref.text}: a step cannot read its own output")
        if name not in scope.earlier_steps:
            raise TemplateError(f"{ref.text}: {name!r} is not an earlier step of this job")
    elif root == "secrets":
        if not scope.secrets_allowed:
            raise TemplateError(f"{ref.text}: secrets cannot be used here, this config is published as an event")
    elif root == "check":
        if scope.in_check:
            raise TemplateError(f"{ref.text}: the check step cannot read its own payload")
        if not scope.has_check:
            raise TemplateError(f"{ref.text}: this job has no check step")


def iter_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(dotted path, text)`` of every string inside a JSON value (object keys are not values)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from iter_strings(item, f"{path}.{index}")
