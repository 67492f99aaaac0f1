"""Waking the fire loop early: in process (an ``asyncio.Event``) and across replicas (LISTEN/NOTIFY).

The fire loop sleeps until the earliest next fire time it knows of. A schedule change that commits a
next fire time *earlier* than that deadline wakes it; a later one does not need to (the loop wakes at
its deadline anyway and then sees the change). Removing a schedule never wakes anybody.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime

import asyncpg

from automation_core.logging import get_logger
from automation_scheduler.db.repository import WAKE_CHANNEL

log = get_logger(__name__)
RECONNECT_INTERVAL_SECONDS = 5.0


class WakeSignal:
    """The fire loop's alarm clock, shared by the loop, the job-event use cases and the listener."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._deadline: datetime | None = None
        self._followers: list[WakeSignal] = []

    def follower(self) -> WakeSignal:
        """A signal of its own for another fire-loop worker, poked whenever this one is poked."""
        signal = WakeSignal()
        self._followers.append(signal)
        return signal

    def poke(self, at: datetime | None = None) -> None:
        """Wake the loop unless it already plans to wake by ``at`` (None: wake unconditionally)."""
        deadline = self._deadline
        if at is None or deadline is None or at < deadline:
            self._event.set()
        for follower in self._followers:
            follower.poke(at)

    def arm(self) -> None:
        """Start a new round: forget earlier pokes (the caller reads the table next)."""
        self._event.clear()
        self._deadline = None

    async def sleep(self, deadline: datetime | None, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until poked; True when poked."""
        self._deadline = deadline
        try:
            if self._event.is_set():
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=max(timeout, 0.0))
                return True
            return False
        finally:
            self._deadline = None


def parse_payload(payload: str) -> datetime | None:
    """The next fire time a NOTIFY carries (None for an empty or unreadable payload: wake anyway)."""
    if not payload:
        return None
    try:
        return datetime.fromisoformat(payload)
    except ValueError:
        return None


class WakeListener:
    """LISTEN on :data:`WAKE_CHANNEL` with a dedicated connection, reconnecting when it drops."""

    def __init__(self, dsn: str, signal: WakeSignal) -> None:
        self._dsn = dsn
        self._signal = signal
        self._conn: asyncpg.Connection | None = None
        self._last_attempt = float("-inf")

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._signal.poke(parse_payload(str(payload)))

    async def ensure(self) -> None:
        """(Re)connect when not listening, at most every few seconds.

        Call it before reading the table: notifications lost while disconnected are then covered.
        """
        if self.listening:
            return
        now = time.monotonic()
        if now - self._last_attempt < RECONNECT_INTERVAL_SECONDS:
            return
        self._last_attempt = now
        await self.close()
        try:
            conn = await asyncpg.connect(self._dsn, server_settings={"application_name": "scheduler-wake"})
            await conn.add_listener(WAKE_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("wake_listen_failed", error=str(exc))
            return
        self._conn = conn
        log.info("wake_listening", channel=WAKE_CHANNEL)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
