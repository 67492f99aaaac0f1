"""Hand-written fakes of a browser and its launcher, for tests of the pool's bookkeeping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(eq=False)
class FakeBrowser:
    """A browser that is connected until :meth:`crash` or :meth:`close`."""

    number: int
    connected: bool = True
    closed: bool = False

    def is_connected(self) -> bool:
        return self.connected

    async def close(self) -> None:
        self.closed = True
        self.connected = False

    def crash(self) -> None:
        """Disconnect as a crashed browser process would."""
        self.connected = False


@dataclass
class FakeLauncher:
    """Launches :class:`FakeBrowser` objects; ``failures`` makes that many next launches raise."""

    failures: int = 0
    launched: list[FakeBrowser] = field(default_factory=list)

    async def launch(self) -> FakeBrowser:
        await asyncio.sleep(0)
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("fake launch failure")
        browser = FakeBrowser(number=len(self.launched) + 1)
        self.launched.append(browser)
        return browser

    @property
    def open_browsers(self) -> list[FakeBrowser]:
        return [b for b in self.launched if not b.closed]
