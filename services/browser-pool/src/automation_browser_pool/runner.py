"""Running a task's actions in a fresh browser context of a pooled browser.

Every action gets what is left of the task's deadline as its Playwright timeout and runs under an
asyncio deadline as well, half a second later (``evaluate`` and ``pdf`` take no timeout of their own). The first failing
action ends the run: the outcome keeps what earlier actions produced (outputs, artifacts) and one
line naming the action and the cause. The context is closed in every case, so no cookie, storage
or page outlives its task.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from playwright._impl._api_structures import SetCookieParam
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize
from playwright.async_api import Error as PlaywrightError

from automation_browser_pool.domain import CapturedArtifact, RunOutcome, UrlRefused, check_url, describe_error
from automation_browser_pool.domain.outcome import ArtifactKind, clean_text, to_json_value
from automation_contracts import (
    BrowserAction,
    BrowserTask,
    ClickAction,
    Cookie,
    EvaluateAction,
    ExtractAction,
    FillAction,
    GotoAction,
    PdfAction,
    PressAction,
    ScreenshotAction,
    SetCookiesAction,
    WaitForAction,
)
from automation_core.logging import get_logger

log = get_logger(__name__)
CLOSE_TIMEOUT_SECONDS = 10.0
PAGE_INFO_TIMEOUT_SECONDS = 1.0
MAX_TITLE_LENGTH = 2000
MAX_URL_LENGTH = 8192
DEADLINE_GRACE_SECONDS = 0.5
"""Slack of the asyncio deadline over Playwright's own timeouts, so Playwright's error (naming what it
waited for) wins the race; only actions without a timeout of their own (evaluate, pdf) hit it."""


class ActionFailed(Exception):
    """An action that cannot complete for a reason of ours (artifact too large, URL refused)."""


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Defaults and limits of the runner."""

    viewport_width: int = 1280
    viewport_height: int = 720
    max_artifact_bytes: int = 25 * 1024 * 1024


class TaskRunner:
    """Runs one task's actions on a browser and reports a :class:`RunOutcome`."""

    def __init__(self, options: RunnerOptions) -> None:
        self._options = options

    async def run(self, browser: Browser, task: BrowserTask, deadline: float) -> RunOutcome:
        """Run ``task`` in a fresh context of ``browser``, finishing by ``deadline`` (``time.monotonic``)."""
        outcome = RunOutcome()
        viewport = task.viewport
        size = ViewportSize(
            width=viewport.width if viewport else self._options.viewport_width,
            height=viewport.height if viewport else self._options.viewport_height,
        )
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0) + DEADLINE_GRACE_SECONDS):
                context = await browser.new_context(viewport=size, accept_downloads=False, service_workers="block")
        except TimeoutError:
            outcome.fail(f"browser unavailable: no new context within the task's {task.timeout_seconds:g}s timeout")
            return outcome
        except PlaywrightError as exc:
            outcome.fail(f"browser unavailable: {describe_error(exc)}")
            return outcome
        try:
            page = await context.new_page()
            await self._run_actions(context, page, task, deadline, outcome)
            outcome.title, outcome.url = await _page_info(page)
        except PlaywrightError as exc:
            outcome.fail(f"browser error: {describe_error(exc)}")
        finally:
            await _close_context(context)
        return outcome

    async def _run_actions(
        self, context: BrowserContext, page: Page, task: BrowserTask, deadline: float, outcome: RunOutcome
    ) -> None:
        for index, action in enumerate(task.actions):
            label = f"action {index} ({action.type})"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome.fail(f"{label}: the task's {task.timeout_seconds:g}s timeout ran out")
                return
            try:
                async with asyncio.timeout(remaining + DEADLINE_GRACE_SECONDS):
                    await self._apply(
                        context, page, index=index, action=action, timeout_ms=remaining * 1000, outcome=outcome
                    )
            except TimeoutError:
                outcome.fail(f"{label}: the task's {task.timeout_seconds:g}s timeout ran out")
                return
            except PlaywrightError as exc:
                outcome.fail(f"{label}: {describe_error(exc)}")
                return
            except ActionFailed as exc:
                outcome.fail(f"{label}: {exc}")
                return

    async def _apply(
        self,
        context: BrowserContext,
        page: Page,
        *,
        index: int,
        action: BrowserAction,
        timeout_ms: float,
        outcome: RunOutcome,
    ) -> None:
        match action:
            case GotoAction(url=url, wait_until=wait_until):
                _refuse_unless_allowed(url)
                await page.goto(url, wait_until=wait_until, timeout=timeout_ms)
            case ClickAction(selector=selector):
                await page.click(selector, timeout=timeout_ms)
            case FillAction(selector=selector, value=value):
                await page.fill(selector, value, timeout=timeout_ms)
            case PressAction(selector=selector, key=key):
                await page.press(selector, key, timeout=timeout_ms)
            case WaitForAction(selector=selector, state=state):
                await page.wait_for_selector(selector, state=state, timeout=timeout_ms)
            case ExtractAction(selector=selector, attribute=attribute, name=name):
                element = page.locator(selector).first
                if attribute is None:
                    text = await element.text_content(timeout=timeout_ms)
                else:
                    text = await element.get_attribute(attribute, timeout=timeout_ms)
                outcome.outputs[name] = to_json_value(text)
            case EvaluateAction(expression=expression, name=name):
                outcome.outputs[name] = to_json_value(await page.evaluate(expression))
            case ScreenshotAction(full_page=full_page, name=name):
                data = await page.screenshot(full_page=full_page, type="png", timeout=timeout_ms)
                self._keep(
                    outcome,
                    index,
                    "screenshot",
                    name=name or f"screenshot-{index}.png",
                    content_type="image/png",
                    data=data,
                )
            case PdfAction(name=name):
                data = await page.pdf(print_background=True)
                self._keep(
                    outcome, index, "pdf", name=name or f"page-{index}.pdf", content_type="application/pdf", data=data
                )
            case SetCookiesAction(cookies=cookies):
                await context.add_cookies([_cookie_param(c) for c in cookies])

    def _keep(
        self, outcome: RunOutcome, index: int, kind: ArtifactKind, *, name: str, content_type: str, data: bytes
    ) -> None:
        limit = self._options.max_artifact_bytes
        if len(data) > limit:
            raise ActionFailed(f"the {kind} is {len(data)} bytes, over the {limit}-byte limit")
        outcome.artifacts.append(CapturedArtifact(index, kind, name, content_type, data))


def _refuse_unless_allowed(url: str) -> None:
    try:
        check_url(url)
    except UrlRefused as exc:
        raise ActionFailed(str(exc)) from None


def _cookie_param(cookie: Cookie) -> SetCookieParam:
    param = SetCookieParam(name=cookie.name, value=cookie.value)
    if cookie.url is not None:
        _refuse_unless_allowed(cookie.url)
        param["url"] = cookie.url
    else:
        param["domain"] = cookie.domain
        param["path"] = cookie.path or "/"
    return param


async def _page_info(page: Page) -> tuple[str | None, str | None]:
    """The page's title and URL, or None for what a dead or stuck page cannot tell."""
    title: str | None = None
    try:
        async with asyncio.timeout(PAGE_INFO_TIMEOUT_SECONDS):
            title = await page.title()
    except (TimeoutError, PlaywrightError):
        log.debug("page_title_unavailable")
    url = page.url or None
    return (
        None if title is None else clean_text(title, MAX_TITLE_LENGTH),
        None if url is None else clean_text(url, MAX_URL_LENGTH),
    )


async def _close_context(context: BrowserContext) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await context.close()
    except (TimeoutError, PlaywrightError) as exc:
        log.warning("browser_context_close_failed", error=describe_error(exc))
