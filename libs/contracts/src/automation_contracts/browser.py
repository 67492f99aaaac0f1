"""The browser-pool request/reply pair: ``browser.task`` and ``browser.result``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from automation_contracts.primitives import Contract, Uri, Uuid

Selector = Annotated[str, Field(min_length=1)]
OutputName = Annotated[str, Field(min_length=1)]
ArtifactName = Annotated[str, Field(min_length=1)]


class Viewport(Contract):
    """Page size in CSS pixels."""

    width: Annotated[int, Field(ge=1, le=10000)]
    height: Annotated[int, Field(ge=1, le=10000)]


class GotoAction(Contract):
    """Navigate to ``url`` and wait for the load state ``wait_until``."""

    type: Literal["goto"]
    url: Uri
    wait_until: Literal["load", "domcontentloaded", "networkidle"] = "load"


class ClickAction(Contract):
    """Click the element matched by ``selector``."""

    type: Literal["click"]
    selector: Selector


class FillAction(Contract):
    """Fill the input matched by ``selector`` with ``value``."""

    type: Literal["fill"]
    selector: Selector
    value: str


class PressAction(Contract):
    """Press ``key`` (Playwright key name or chord) on the element matched by ``selector``."""

    type: Literal["press"]
    selector: Selector
    key: Annotated[str, Field(min_length=1)]


class WaitForAction(Contract):
    """Wait until the element matched by ``selector`` reaches ``state``."""

    type: Literal["wait_for"]
    selector: Selector
    state: Literal["attached", "detached", "visible", "hidden"]


class ExtractAction(Contract):
    """Store the element's text content, or its ``attribute``, in the reply's outputs under ``name``."""

    type: Literal["extract"]
    selector: Selector
    attribute: Annotated[str, Field(min_length=1)] | None = None
    name: OutputName


class EvaluateAction(Contract):
    """Evaluate a JavaScript ``expression`` in the page; store its JSON value under ``name``."""

    type: Literal["evaluate"]
    expression: Annotated[str, Field(min_length=1)]
    name: OutputName


class ScreenshotAction(Contract):
    """Take a PNG screenshot, stored as an artifact."""

    type: Literal["screenshot"]
    full_page: bool = False
    name: ArtifactName | None = None


class PdfAction(Contract):
    """Print the page to PDF, stored as an artifact."""

    type: Literal["pdf"]
    name: ArtifactName | None = None


class Cookie(Contract):
    """A cookie scoped either by ``url`` or by ``domain`` (and optionally ``path``), as Playwright takes it."""

    name: Annotated[str, Field(min_length=1)]
    value: str
    url: Uri | None = None
    domain: Annotated[str, Field(min_length=1)] | None = None
    path: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if self.url is not None and (self.domain is not None or self.path is not None):
            raise ValueError("a cookie takes either url, or domain and path, not both")
        if self.url is None and self.domain is None:
            raise ValueError("a cookie needs url or domain")
        return self


class SetCookiesAction(Contract):
    """Add ``cookies`` to the browser context."""

    type: Literal["set_cookies"]
    cookies: Annotated[list[Cookie], Field(min_length=1)]


BrowserAction = Annotated[
    GotoAction
    | ClickAction
    | FillAction
    | PressAction
    | WaitForAction
    | ExtractAction
    | EvaluateAction
    | ScreenshotAction
    | PdfAction
    | SetCookiesAction,
    Field(discriminator="type"),
]
"""One browser action, told apart by its ``type``."""


BROWSER_REPLY_SLACK_SECONDS = 15.0
"""How much longer than a task's ``timeout_seconds`` its caller (the executor) waits for the reply,
counted from the request's ``time``. browser-pool does not start a task sent longer ago than that: no
one waits for its result any more."""


class BrowserTask(Contract):
    """``browser.task``: actions to run in a fresh browser context; the reply goes to ``reply_to``."""

    task_id: Uuid
    execution_id: Uuid | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30
    viewport: Viewport | None = None
    actions: Annotated[list[BrowserAction], Field(min_length=1)]


class Artifact(Contract):
    """A file a task produced, stored by browser-pool under ``id``."""

    id: Uuid
    kind: Literal["screenshot", "pdf"]
    content_type: Annotated[str, Field(min_length=1)]
    size_bytes: Annotated[int, Field(ge=0)]
    action_index: Annotated[int, Field(ge=0)]


class BrowserResult(Contract):
    """``browser.result``: browser-pool's reply to a ``browser.task``."""

    task_id: Uuid
    ok: bool
    title: str | None = None
    url: str | None = None
    outputs: dict[str, Any]
    artifacts: list[Artifact]
    error: str | None = None
    duration_seconds: Annotated[float, Field(ge=0)]
