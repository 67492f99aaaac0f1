"""Launching Debian's Chromium through Playwright (never Playwright's own browser download).

Chromium runs headless with ``--no-sandbox``: containers and CI run the service as root, and
Chromium's setuid/user-namespace sandbox cannot start as root. Isolation comes from the container
(its own user, read-only filesystem, no capabilities) and from a fresh browser context per task;
the URL policy keeps tasks off ``file:`` and browser-internal pages.
"""

from __future__ import annotations

import os

from playwright.async_api import Browser, Playwright, async_playwright

from automation_core.logging import get_logger

log = get_logger(__name__)

CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
"""Flags of every launch: no sandbox (root in containers), no GPU, no phoning home, small /dev/shm."""


class ChromiumNotFound(RuntimeError):
    """``AUTOMATION_CHROMIUM_PATH`` names no executable file."""


def require_executable(path: str) -> None:
    """Raise :class:`ChromiumNotFound` unless ``path`` is an executable file."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ChromiumNotFound(
            f"no Chromium executable at {path!r} (set AUTOMATION_CHROMIUM_PATH; on Debian: apt-get install chromium)"
        )


class ChromiumLauncher:
    """Owns the Playwright driver; :meth:`launch` starts one headless Chromium."""

    def __init__(self, executable_path: str, *, launch_timeout: float = 30.0) -> None:
        self.executable_path = executable_path
        self._launch_timeout_ms = launch_timeout * 1000
        self._playwright: Playwright | None = None

    async def start(self) -> None:
        """Check the binary and start the Playwright driver."""
        require_executable(self.executable_path)
        self._playwright = await async_playwright().start()

    async def launch(self) -> Browser:
        """A new headless Chromium."""
        if self._playwright is None:
            raise RuntimeError("ChromiumLauncher.start() first")
        browser = await self._playwright.chromium.launch(
            executable_path=self.executable_path,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=self._launch_timeout_ms,
            handle_sigint=False,
            handle_sigterm=False,
            handle_sighup=False,
        )
        log.info("browser_launched", version=browser.version)
        return browser

    async def stop(self) -> None:
        """Stop the driver (it kills any browser still running)."""
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
