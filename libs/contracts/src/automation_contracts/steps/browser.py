"""The ``browser`` step: a list of actions sent to browser-pool as one ``browser.task``.

Each action is checked with the contract's own models (:data:`automation_contracts.BrowserAction`) and
every ``goto`` and cookie URL with browser-pool's rule (``http``/``https`` with a host, or
``about:blank`` for ``goto``), so a config that passes here is a task browser-pool accepts. Templates
are substituted only at run time, so for the check each one stands in as the word ``template`` (a
``url`` that begins with a template as ``https://template.invalid``):
``"https://${{ parameters.host }}/login"`` is checked as a URL.

An ``evaluate`` action's ``expression`` is JavaScript run in the page: a template there would paste a
value into code, so it is refused. Give the page the value with a ``fill`` action and read it from
the page, or compute with a ``python`` step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from automation_contracts.browser import BrowserAction, Viewport
from automation_contracts.errors import from_validation_error
from automation_contracts.steps.base import WORD_PLACEHOLDER, StepConfig, check_url
from automation_contracts.steps.templates import TEMPLATE, TEMPLATE_START

URL_PLACEHOLDER = "https://template.invalid"
DEFAULT_BROWSER_TIMEOUT_SECONDS = 30.0
CODE_FIELDS = {"evaluate": ("expression",)}
"""Action fields that hold JavaScript: no template may stand there."""
_ACTION: TypeAdapter[Any] = TypeAdapter(BrowserAction)
WEB_SCHEMES = frozenset({"http", "https"})
ABOUT_BLANK = "about:blank"


def url_problems(action: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(field, message)`` for each URL of a valid ``action`` that browser-pool would refuse to open.

    A URL that begins with a template is checked at run time (by browser-pool); any other must name its
    scheme itself, as the ``http`` step's ``url`` must.
    """
    urls: list[tuple[str, str, bool]] = []
    if action.get("type") == "goto":
        urls.append(("url", str(action["url"]), True))
    elif action.get("type") == "set_cookies":
        for index, cookie in enumerate(action["cookies"]):
            if cookie.get("url") is not None:
                urls.append((f"cookies.{index}.url", str(cookie["url"]), False))
    for field, url, blank_allowed in urls:
        if blank_allowed and url.strip().lower() == ABOUT_BLANK:
            continue
        try:
            check_url(url.strip(), WEB_SCHEMES)
        except ValueError as exc:
            opens = "http(s) URLs and about:blank" if blank_allowed else "http(s) URLs"
            yield field, f"{exc} (browser-pool opens only {opens})"


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


def code_template(action: Mapping[str, Any]) -> str | None:
    """The field of ``action`` that puts a template into JavaScript, or None."""
    for field in CODE_FIELDS.get(str(action.get("type")), ()):
        value = action.get(field)
        if isinstance(value, str) and TEMPLATE_START in value:
            return field
    return None


class BrowserConfig(StepConfig):
    """Actions (goto, click, fill, press, wait_for, extract, evaluate, screenshot, pdf, set_cookies)."""

    actions: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=500)]
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] | None = None
    viewport: Viewport | None = None

    @property
    def timeout(self) -> float:
        """The task's timeout in seconds (default 30)."""
        return self.timeout_seconds if self.timeout_seconds is not None else DEFAULT_BROWSER_TIMEOUT_SECONDS

    def problems(self) -> Iterator[tuple[str, str]]:
        for index, action in enumerate(self.actions):
            field = code_template(action)
            if field is not None:
                yield (
                    f"actions.{index}.{field}",
                    "templates cannot be used in JavaScript code (a value would become code); put the value in"
                    " the page with a fill action and read it from there, or compute it in a python step",
                )
                return
            checked = stand_in(action)
            try:
                _ACTION.validate_python(checked)
            except ValidationError as exc:
                error = from_validation_error(exc, checked, f"actions.{index}")
                yield error.path, error.reason.removeprefix("Value error, ")
                return
            for field, message in url_problems(action):
                yield f"actions.{index}.{field}", message
                return
