"""A small asyncpg pool for a service's hot statements, beside its SQLAlchemy engine.

The ORM session costs several round trips and a good deal of Python per transaction (checkout,
``BEGIN``, each statement compiled and bound, ``COMMIT``). A service's few statements that run for
every message go straight to asyncpg on a pool of their own: prepared once per connection, their
arguments as arrays. Nothing these statements do outlives their own transaction (no ``SET``, no
``LISTEN``, no advisory lock, no open cursor), so a connection goes back to the pool without asyncpg's
reset round trip. A connection that broke raises (:data:`DB_ERRORS`) at the statement that meets it, and
:func:`checkout` terminates it rather than putting it back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from automation_db.pools import watch_pool

DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
"""What a failed statement on such a pool raises (connection lost, its protocol broken, server error)."""
BROKEN: tuple[type[BaseException], ...] = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
"""Errors after which a connection's state is unknown: it must not go back to the pool."""
BROKEN_OR_CANCELLED: tuple[type[BaseException], ...] = (*BROKEN, asyncio.CancelledError)


@contextlib.asynccontextmanager
async def checkout(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy[Record]]:
    """A connection of a statement pool. One that raised :data:`BROKEN` (or was cancelled mid-statement)
    is terminated instead of going back: these pools skip asyncpg's reset round trip, which would
    otherwise have found it broken, and the next statement on it would fail again ("cannot switch to
    state …; another operation is in progress")."""
    async with pool.acquire() as connection:
        try:
            yield connection
        except BROKEN_OR_CANCELLED:
            connection.terminate()
            raise


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Nothing to reset: the statements leave no session state (see the module docstring)."""


async def open_statement_pool(dsn: str, *, size: int, service: str, name: str) -> asyncpg.Pool:
    """Connect a pool of at most ``size`` connections (one at first), ``application_name``
    ``<service>-<name>``, reported as ``{service, pool=name}`` (:mod:`automation_db.pools`)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        reset=_no_reset,
        server_settings={"application_name": f"{service}-{name}"},
    )
    watch_pool(service, name, pool)
    return pool
