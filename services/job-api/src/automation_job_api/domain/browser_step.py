"""The ``browser`` step: a list of actions sent to browser-pool as one ``browser.task``.

Each action is checked with the contract's own models (:data:`automation_contracts.BrowserAction`), so a
definition job-api accepts is a task browser-pool accepts. Templates are substituted only at run time,
so for the check each one stands in as the word ``template`` (a ``url`` that begins with a template as
``https://template.invalid``): ``"https://${{ parameters.host }}/login"`` is checked as a URL, and the
rest is left to the executor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from automation_contracts import BrowserAction, Viewport
from automation_contracts.errors import from_validation_error
from automation_job_api.domain.step_base import StepConfig
from automation_job_api.domain.templates import TEMPLATE, TEMPLATE_START

_ACTION: TypeAdapter[Any] = TypeAdapter(BrowserAction)
URL_PLACEHOLDER = "https://template.invalid"
WORD_PLACEHOLDER = "template"


def stand_in(value: Any, key: str = "") -> Any:
    """``value`` with every template replaced by a placeholder of the right shape (see the module doc)."""
    if isinstance(value, str):
        if TEMPLATE_START not in value:
            return value
        if key == "url" and value.startswith(TEMPLATE_START):
            match = TEMPLATE.match(value)
            rest = value[match.end() :] if match is not None else ""
            return URL_PLACEHOLDER + TEMPLATE.sub(WORD_PLACEHOLDER, rest)
        return TEMPLATE.sub(WORD_PLACEHOLDER, value)
    if isinstance(value, Mapping):
        return {k: stand_in(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [stand_in(item, key) for item in value]
    return value


class BrowserConfig(StepConfig):
    """Actions (goto, click, fill, press, wait_for, extract, evaluate, screenshot, pdf, set_cookies)."""

    actions: Annotated[list[Any], Field(min_length=1, max_length=500)]
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] | None = None
    viewport: Viewport | None = None

    def problems(self) -> Iterator[tuple[str, str]]:
        for index, action in enumerate(self.actions):
            checked = stand_in(action)
            try:
                _ACTION.validate_python(checked)
            except ValidationError as exc:
                error = from_validation_error(exc, checked, f"actions.{index}")
                yield error.path, error.reason.removeprefix("Value error, ")
                return
