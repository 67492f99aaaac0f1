"""A pool of warm browsers, each serving a bounded number of concurrent tasks.

The pool knows browsers only through :class:`PoolBrowser` (connected? close!) and a launcher
coroutine, so unit tests drive it with hand-written fakes and the service with Playwright. A task
takes a slot with :meth:`BrowserPool.slot`, waiting up to its timeout; the slot is on the least busy
connected browser. A browser that disconnected (crashed, killed) is dropped and a replacement is
launched; a browser that has served ``recycle_after`` tasks takes no more, a replacement is launched
at once, and the old one is closed when its last task ends. Launches that fail are retried with
backoff while the pool is open.

All bookkeeping is synchronous on the event loop; waiters are woken by a generation event, so
releasing a slot never awaits (safe in ``finally`` blocks of cancelled tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from automation_browser_pool import metrics
from automation_core.logging import get_logger

log = get_logger(__name__)
MAX_RELAUNCH_DELAY_SECONDS = 30.0


class PoolBrowser(Protocol):
    """What the pool needs of a browser (Playwright's ``Browser`` fits)."""

    def is_connected(self) -> bool: ...

    async def close(self) -> None: ...


B = TypeVar("B", bound=PoolBrowser)


class PoolError(RuntimeError):
    """Base of the pool's errors."""


class PoolStartError(PoolError):
    """Not one browser could be launched at start."""


class PoolClosed(PoolError):
    """The pool is closing; no more slots are handed out."""


class SlotTimeout(PoolError, TimeoutError):
    """No slot came free within the task's timeout."""


@dataclass(eq=False, slots=True)
class _Member(Generic[B]):
    number: int
    browser: B
    active: int = 0
    served: int = 0
    retiring: bool = False
    removed: bool = False


@dataclass(frozen=True, slots=True)
class BrowserStatus:
    """One browser of the pool."""

    number: int
    connected: bool
    active_contexts: int
    tasks_served: int
    retiring: bool


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """A snapshot of the pool."""

    size: int
    contexts_per_browser: int
    capacity_contexts: int
    connected_browsers: int
    busy_contexts: int
    waiting_tasks: int
    restarts: int
    browsers: tuple[BrowserStatus, ...]


class BrowserPool(Generic[B]):
    """``size`` browsers x ``contexts_per_browser`` concurrent task slots."""

    def __init__(
        self,
        launch: Callable[[], Awaitable[B]],
        *,
        size: int,
        contexts_per_browser: int,
        recycle_after: int,
        supervise_interval: float = 1.0,
        relaunch_delay: float = 1.0,
        close_timeout: float = 10.0,
    ) -> None:
        if size < 1 or contexts_per_browser < 1 or recycle_after < 1:
            raise ValueError("size, contexts_per_browser and recycle_after must be at least 1")
        self._launch = launch
        self.size = size
        self.contexts_per_browser = contexts_per_browser
        self.recycle_after = recycle_after
        self._supervise_interval = supervise_interval
        self._relaunch_delay = relaunch_delay
        self._close_timeout = close_timeout
        self._members: list[_Member[B]] = []
        self._numbers = itertools.count(1)
        self._changed = asyncio.Event()
        self._launches: set[asyncio.Task[None]] = set()
        self._closings: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._busy = 0
        self._waiting = 0
        self._restarts = 0
        self._closed = False

    @property
    def capacity(self) -> int:
        """Configured task slots: browsers x contexts per browser."""
        return self.size * self.contexts_per_browser

    async def start(self) -> None:
        """Launch the warm browsers; fails only when none could be launched."""
        metrics.CAPACITY_CONTEXTS.set(self.capacity)
        results = await asyncio.gather(*(self._launch() for _ in range(self.size)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        launched = [r for r in results if not isinstance(r, BaseException)]
        if not launched:
            raise PoolStartError(f"no browser could be launched: {failures[0]}") from failures[0]
        for browser in launched:
            self._add(browser)
        for failure in failures:
            log.warning("browser_launch_failed", error=str(failure))
            self._spawn_launch()
        self._supervisor = asyncio.create_task(self._supervise(), name="browser-pool-supervisor")
        log.info("browser_pool_started", browsers=len(launched), capacity=self.capacity)

    @contextlib.asynccontextmanager
    async def slot(self, timeout: float) -> AsyncIterator[B]:
        """A browser with one free context slot, held for the block; waits up to ``timeout`` seconds."""
        member = await self._acquire(timeout)
        try:
            yield member.browser
        finally:
            self._release(member)

    async def check(self) -> None:
        """Readiness: raises unless at least one browser is connected."""
        if not any(m.browser.is_connected() for m in self._members):
            raise RuntimeError("no browser connected")

    def status(self) -> PoolStatus:
        """Browsers, their load, and the pool's totals."""
        browsers = tuple(
            BrowserStatus(m.number, m.browser.is_connected(), m.active, m.served, m.retiring) for m in self._members
        )
        return PoolStatus(
            size=self.size,
            contexts_per_browser=self.contexts_per_browser,
            capacity_contexts=self.capacity,
            connected_browsers=sum(1 for b in browsers if b.connected),
            busy_contexts=self._busy,
            waiting_tasks=self._waiting,
            restarts=self._restarts,
            browsers=browsers,
        )

    async def close(self) -> None:
        """Stop handing out slots, stop relaunching, close every browser."""
        self._closed = True
        self._notify()
        tasks = list(self._launches)
        if self._supervisor is not None:
            tasks.append(self._supervisor)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        members, self._members = self._members, []
        for member in members:
            member.removed = True
        await asyncio.gather(*(self._close_browser(m.browser) for m in members), *self._closings)
        self._publish_gauges()
        log.info("browser_pool_closed")

    async def _acquire(self, timeout: float) -> _Member[B]:
        started = time.monotonic()
        deadline = started + timeout
        self._waiting += 1
        try:
            while True:
                if self._closed:
                    raise PoolClosed("the browser pool is closing")
                member = self._pick()
                if member is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SlotTimeout(f"no browser slot came free within {timeout:g}s")
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()
        finally:
            self._waiting -= 1
            metrics.POOL_WAIT.observe(time.monotonic() - started)
        member.active += 1
        member.served += 1
        self._busy += 1
        if member.served >= self.recycle_after and not member.retiring:
            member.retiring = True
            self._count_restart("recycled", member)
            self._spawn_launch()
        self._publish_gauges()
        return member

    def _release(self, member: _Member[B]) -> None:
        member.active -= 1
        self._busy -= 1
        if not member.removed:
            if not member.browser.is_connected():
                self._drop_dead(member)
            elif member.retiring and member.active == 0:
                self._remove(member)
        self._publish_gauges()
        self._notify()

    def _pick(self) -> _Member[B] | None:
        for member in [m for m in self._members if not m.browser.is_connected()]:
            self._drop_dead(member)
        free = [m for m in self._members if not m.retiring and m.active < self.contexts_per_browser]
        return min(free, key=lambda m: (m.active, m.number), default=None)

    def _add(self, browser: B) -> None:
        member = _Member(next(self._numbers), browser)
        self._members.append(member)
        log.info("browser_added", browser=member.number)
        self._publish_gauges()
        self._notify()

    def _drop_dead(self, member: _Member[B]) -> None:
        """A disconnected browser: forget it and launch a replacement (unless one is already coming)."""
        log.warning("browser_disconnected", browser=member.number, active=member.active)
        if not member.retiring:
            self._count_restart("crashed", member)
            self._spawn_launch()
        self._remove(member)

    def _remove(self, member: _Member[B]) -> None:
        member.removed = True
        self._members.remove(member)
        self._spawn(self._closings, self._close_browser(member.browser))
        self._publish_gauges()

    def _count_restart(self, reason: str, member: _Member[B]) -> None:
        self._restarts += 1
        metrics.RESTARTS.labels(reason).inc()
        log.info("browser_replacing", browser=member.number, reason=reason, served=member.served)

    def _spawn_launch(self) -> None:
        if not self._closed:
            self._spawn(self._launches, self._relaunch())

    def _spawn(self, tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _relaunch(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                browser = await self._launch()
            except Exception as exc:
                attempt += 1
                delay = min(self._relaunch_delay * 2 ** (attempt - 1), MAX_RELAUNCH_DELAY_SECONDS)
                log.warning("browser_launch_failed", error=str(exc), attempt=attempt, retry_in=delay, exc_info=True)
                await asyncio.sleep(delay)
                continue
            if self._is_closed():
                await self._close_browser(browser)
            else:
                self._add(browser)
            return

    async def _close_browser(self, browser: B) -> None:
        try:
            async with asyncio.timeout(self._close_timeout):
                await browser.close()
        except Exception as exc:
            log.warning("browser_close_failed", error=str(exc), exc_info=True)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self._supervise_interval)
            for member in [m for m in self._members if not m.browser.is_connected()]:
                self._drop_dead(member)
                self._notify()

    def _is_closed(self) -> bool:
        return self._closed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _publish_gauges(self) -> None:
        metrics.BROWSERS.set(sum(1 for m in self._members if m.browser.is_connected()))
        metrics.BUSY_CONTEXTS.set(self._busy)
