"""``${{ ... }}`` templates in step configs: their syntax and what they may refer to.

job-api stores templates as text; the executor substitutes them at run time (as data: argv elements,
header values, JSON fields, quoted shell words). Here a job definition is refused when a template
could never be substituted:

- it does not parse: ``${{`` without ``}}``, or an expression that is not a dotted path of at least
  two names (``${{ parameters }}``, ``${{ parameters.a b }}``);
- its root is not one of ``parameters``, ``steps``, ``event``, ``secrets``, ``check``;
- ``parameters.<name>`` names a parameter the job's ``parameters`` schema does not declare under
  ``properties``;
- ``steps.<name>.output[.<path>]`` names the step itself, a later step or no step (and the ``check``
  step cannot read any step: it runs first);
- ``secrets.<NAME>`` is not exactly a secret name (``^[A-Z][A-Z0-9_]*$``), or appears where its value
  would be published (``event.emit`` configs);
- ``check.payload[.<path>]`` appears in a job without a ``check`` step, or in the check step itself.

The grammar is the executor's: ``${{`` then a dotted path of ``[A-Za-z0-9_-]`` names (the first one an
identifier), then ``}}``; whitespace around the path is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from automation_core.errors import InvalidInput

TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
TEMPLATE_START = "${{"
EXPRESSION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+)\s*$")
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
ROOTS = ("parameters", "steps", "event", "secrets", "check")


class TemplateError(ValueError):
    """A template that can never be substituted; the message says why."""


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

    ``parameters``: names the job declares; ``earlier_steps``: names of the steps before this one;
    ``step_name``: this step's own name; ``has_check``: the job has a check step; ``in_check``: this is
    the check step; ``secrets_allowed``: False where a value would be published (``event.emit``).
    """

    parameters: frozenset[str]
    earlier_steps: frozenset[str] = frozenset()
    step_name: str = ""
    has_check: bool = False
    in_check: bool = False
    secrets_allowed: bool = True


def parse_templates(text: str) -> list[Reference]:
    """Every template of ``text``, parsed; :class:`TemplateError` for a malformed one."""
    references: list[Reference] = []
    for match in TEMPLATE.finditer(text):
        expression = EXPRESSION.match(match.group(1))
        if expression is None:
            raise TemplateError(
                f"{match.group(0)} is not a template expression; write e.g. ${{{{ parameters.name }}}}"
                f" (a dotted path under {', '.join(ROOTS)})"
            )
        parts = tuple(expression.group(1).split("."))
        if parts[0] not in ROOTS:
            raise TemplateError(f"{match.group(0)}: unknown root {parts[0]!r} (known: {', '.join(ROOTS)})")
        references.append(Reference(match.group(0), parts))
    if TEMPLATE_START in TEMPLATE.sub("", text):
        raise TemplateError("a template opened with ${{ is never closed with }}")
    return references


def check_reference(ref: Reference, scope: TemplateScope) -> None:
    """Raise :class:`TemplateError` unless ``ref`` can be substituted in ``scope``."""
    root, rest = ref.root, ref.parts[1:]
    if root == "parameters":
        if rest[0] not in scope.parameters:
            raise TemplateError(
                f"{ref.text}: parameter {rest[0]!r} is not declared in the job's parameters schema (properties)"
            )
    elif root == "steps":
        _check_step_reference(ref, scope)
    elif root == "secrets":
        if len(rest) != 1 or not SECRET_NAME.match(rest[0]):
            raise TemplateError(
                f"{ref.text}: write secrets.NAME with NAME in capitals, digits and _ (e.g. DB_PASSWORD)"
            )
        if not scope.secrets_allowed:
            raise TemplateError(f"{ref.text}: secrets cannot be used here, this config is published as an event")
    elif root == "check":
        if rest[0] != "payload":
            raise TemplateError(f"{ref.text}: the check step's result is read as check.payload[.<path>]")
        if scope.in_check:
            raise TemplateError(f"{ref.text}: the check step cannot read its own payload")
        if not scope.has_check:
            raise TemplateError(f"{ref.text}: this job has no check step")


def _check_step_reference(ref: Reference, scope: TemplateScope) -> None:
    if len(ref.parts) < 3 or ref.parts[2] != "output":
        raise TemplateError(f"{ref.text}: a step's result is read as steps.<name>.output[.<path>]")
    name = ref.parts[1]
    if scope.in_check:
        raise TemplateError(f"{ref.text}: the check step runs before every step and cannot read their output")
    if name == scope.step_name:
        raise TemplateError(f"{ref.text}: a step cannot read its own output")
    if name not in scope.earlier_steps:
        raise TemplateError(f"{ref.text}: {name!r} is not an earlier step of this job")


def iter_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(dotted path, text)`` of every string inside a JSON value (object keys are not values)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_strings(item, f"{path}.{index}")


def check_config_templates(prefix: str, config: Mapping[str, Any], scope: TemplateScope) -> None:
    """Check every template in a step's config; :class:`InvalidInput` naming ``<prefix>.config.<path>``."""
    for path, text in iter_strings(dict(config), f"{prefix}.config"):
        if TEMPLATE_START not in text:
            continue
        try:
            for ref in parse_templates(text):
                check_reference(ref, scope)
        except TemplateError as exc:
            raise InvalidInput(f"{path}: {exc}", field=path) from exc


def declared_parameters(schema: Mapping[str, Any]) -> frozenset[str]:
    """The parameter names a job's ``parameters`` schema declares (its ``properties``)."""
    properties = schema.get("properties")
    return frozenset(properties) if isinstance(properties, Mapping) else frozenset()


def contains_template(text: str) -> bool:
    """Whether ``text`` holds a template (its value is only known at run time)."""
    return TEMPLATE_START in text
