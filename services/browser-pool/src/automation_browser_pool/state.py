"""The typed state browser-pool's lifespan builds and its routes read (``app.state.browser_pool``)."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.async_api import Browser

from automation_browser_pool.db.repository import TaskRepository
from automation_browser_pool.pool import BrowserPool
from automation_browser_pool.service import ArtifactJanitor, BrowserTaskService
from automation_browser_pool.settings import BrowserPoolSettings


@dataclass(frozen=True, slots=True)
class BrowserPoolState:
    """Everything the HTTP routes need, opened by the lifespan."""

    settings: BrowserPoolSettings
    pool: BrowserPool[Browser]
    service: BrowserTaskService[Browser]
    repository: TaskRepository
    janitor: ArtifactJanitor
