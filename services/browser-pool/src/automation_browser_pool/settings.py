"""Settings of browser-pool: the shared ``AUTOMATION_`` base plus the pool's own knobs."""

from __future__ import annotations

from pydantic import Field

from automation_core.settings import ServiceSettings


class BrowserPoolSettings(ServiceSettings):
    """browser-pool configuration (environment variables ``AUTOMATION_*``).

    - ``AUTOMATION_CHROMIUM_PATH``: the Chromium binary Playwright drives (Debian's by default);
      Playwright's own browser download is never used.
    - ``AUTOMATION_BROWSER_POOL_SIZE``: warm browsers launched at start.
    - ``AUTOMATION_BROWSER_CONTEXTS_PER_BROWSER``: concurrent tasks (one fresh context each) per browser.
    - ``AUTOMATION_BROWSER_RECYCLE_AFTER``: tasks a browser serves before it is closed and replaced.
    - ``AUTOMATION_BROWSER_LAUNCH_TIMEOUT_SECONDS``: limit for one browser launch.
    - ``AUTOMATION_BROWSER_VIEWPORT_WIDTH`` / ``_HEIGHT``: page size when a task names none.
    - ``AUTOMATION_BROWSER_MAX_ARTIFACT_BYTES``: largest screenshot or PDF a task may store.
    - ``AUTOMATION_ARTIFACT_RETENTION_HOURS``: age after which artifacts and task records are deleted.
    - ``AUTOMATION_ARTIFACT_CLEANUP_INTERVAL_SECONDS``: how often the retention cleanup runs.
    """

    service_name: str = "browser-pool"
    http_port: int = Field(default=8003, ge=1, le=65535)
    chromium_path: str = "/usr/bin/chromium"
    browser_pool_size: int = Field(default=2, ge=1, le=64)
    browser_contexts_per_browser: int = Field(default=4, ge=1, le=64)
    browser_recycle_after: int = Field(default=200, ge=1, le=1_000_000)
    browser_launch_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    browser_viewport_width: int = Field(default=1280, ge=1, le=10000)
    browser_viewport_height: int = Field(default=720, ge=1, le=10000)
    browser_max_artifact_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    artifact_retention_hours: float = Field(default=168.0, gt=0, le=24 * 3650)
    artifact_cleanup_interval_seconds: float = Field(default=3600.0, gt=0, le=86400)

    @property
    def pool_capacity(self) -> int:
        """Concurrent tasks the pool serves: browsers x contexts per browser (also the consumer's prefetch)."""
        return self.browser_pool_size * self.browser_contexts_per_browser
