"""The browser pool (generic over the browser, injectable launcher) and the Chromium launcher."""

from automation_browser_pool.pool.pool import (
    BrowserPool,
    BrowserStatus,
    PoolBrowser,
    PoolClosed,
    PoolError,
    PoolStartError,
    PoolStatus,
    SlotTimeout,
)

__all__ = [
    "BrowserPool",
    "BrowserStatus",
    "PoolBrowser",
    "PoolClosed",
    "PoolError",
    "PoolStartError",
    "PoolStatus",
    "SlotTimeout",
]
