"""Which browser-pool replica runs a task, so that a task received twice runs once.

A task can arrive again while it still runs: RabbitMQ delivers it again when the connection it came on
dropped (the handling in flight goes on to its end), and a caller whose own connection dropped sends
it again (:class:`~automation_messaging.RpcClient` with a reply queue of its own). The stored result
answers a task that has ended; these claims cover the time before:

- :class:`LocalClaims`: this process only (the default of :class:`~automation_browser_pool.service.BrowserTaskService`).
- :class:`DatabaseClaims`: a PostgreSQL session-level advisory lock per running task (key
  ``hashtextextended('browser-pool.task:<task id>', 0)``), all held on one connection of the replica's
  own. A replica that dies lets go of its claims with its connection, so the task's next delivery
  runs it at once on another replica; one that lives keeps them until it has recorded the result.
  When that connection breaks (PostgreSQL restarted) the claims it held are gone: a task received
  again meanwhile may then run twice, and its first recorded result is the one every answer gives.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

import asyncpg

from automation_core.errors import unreachable_dependency
from automation_core.logging import get_logger

log = get_logger(__name__)
KEY_PREFIX = "browser-pool.task:"
TRY_CLAIM = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
RELEASE = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"


class TaskClaims(Protocol):
    """Claims on running tasks, across the replicas that share them."""

    async def try_claim(self, task_id: uuid.UUID) -> bool:
        """Claim ``task_id`` unless another replica holds it; True when claimed."""
        ...

    async def release(self, task_id: uuid.UUID) -> None:
        """Let go of ``task_id`` (after its result is recorded)."""
        ...


class LocalClaims:
    """Claims within this process."""

    def __init__(self) -> None:
        self._held: set[uuid.UUID] = set()

    async def try_claim(self, task_id: uuid.UUID) -> bool:
        if task_id in self._held:
            return False
        self._held.add(task_id)
        return True

    async def release(self, task_id: uuid.UUID) -> None:
        self._held.discard(task_id)


class DatabaseClaims:
    """Claims as advisory locks on one connection of this replica's own (opened when first needed,
    and again after it broke)."""

    def __init__(self, dsn: str, *, application_name: str = "browser-pool claims") -> None:
        self._dsn = dsn
        self._application_name = application_name
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._held: set[uuid.UUID] = set()

    def _forget_claims(self) -> None:
        """The connection the claims were held on is gone, and they with it."""
        if self._held:
            log.warning("task_claims_lost_with_their_connection", claims=len(self._held))
            self._held.clear()

    async def _open(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._forget_claims()
            self._connection = await asyncpg.connect(
                self._dsn, server_settings={"application_name": self._application_name}
            )
        return self._connection

    def _drop(self) -> None:
        """Close a connection left mid-statement (cancelled, or broken): its claims go with it."""
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
        self._forget_claims()

    async def try_claim(self, task_id: uuid.UUID) -> bool:
        async with self._lock:
            if task_id in self._held:  # advisory locks stack within one session: ask this process first
                return False
            key = f"{KEY_PREFIX}{task_id}"
            fresh = self._connection is None or self._connection.is_closed()
            try:
                claimed = bool(await (await self._open()).fetchval(TRY_CLAIM, key))
            except Exception as exc:
                self._drop()
                if fresh or unreachable_dependency(exc) is None:
                    raise
                # The connection broke since its last statement (PostgreSQL restarted, or ended it):
                # its claims are gone already, and a new one can claim.
                claimed = bool(await (await self._open()).fetchval(TRY_CLAIM, key))
            except BaseException:
                self._drop()
                raise
            if claimed:
                self._held.add(task_id)
            return claimed

    async def release(self, task_id: uuid.UUID) -> None:
        async with self._lock:
            if task_id not in self._held:
                return  # never claimed, or lost with a connection that broke
            self._held.discard(task_id)
            if self._connection is None or self._connection.is_closed():
                return
            try:
                await self._connection.fetchval(RELEASE, f"{KEY_PREFIX}{task_id}")
            except BaseException:
                self._drop()
                raise

    async def aclose(self) -> None:
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed():
                await self._connection.close()
            self._connection = None
            self._held.clear()
