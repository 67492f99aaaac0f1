"""The read model's recording statements, on a small asyncpg pool of job-api's own.

A batch of execution events (see ``automation_job_api.service.executions``) is one transaction of
four round trips: ``BEGIN``; :data:`LOCK_SQL` locks the rows the batch touches, in id order; the
events are folded into them in memory; :data:`WRITE_SQL` writes the new rows, the changed rows and
the log batches, and notifies the log followers, as data-modifying CTEs of one statement over arrays;
``COMMIT``. Through the ORM session the same batch was a pool checkout, ``BEGIN``, five statements
each compiled and bound by SQLAlchemy, and ``COMMIT``: about a third of job-api's CPU under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from automation_contracts.storable import storable_text, storable_value
from automation_db.statements import checkout, open_statement_pool
from automation_job_api.domain.notifications import NOTIFY_CHANNEL, notify_payloads

STATE_COLUMNS = ("status", "attempt", "phase", "started_at", "finished_at", "exit_code", "error", "result")
"""An execution's state as the events fold it (``result`` is JSON)."""
ROW_COLUMNS = ("id", "account_id", "job_id", "trigger", "scheduled_for", *STATE_COLUMNS)
"""What a batch reads of a row and writes back."""
FACT_COLUMNS = ("job_version", "parameters", "queued_at")
"""What a run was asked to be (``RunFacts``): written by a batch, never read by it; an update keeps what
the row has and fills only what is null (a manual run's row has them from the start)."""
JSON_COLUMNS = frozenset({"result", "entries", "parameters"})
_UNSTORABLE_JSON = re.compile(r"\\u0000|NaN|Infinity")

LOCK_SQL = f"""
SELECT {", ".join(ROW_COLUMNS)} FROM job_api.executions
WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""  # noqa: S608 - constants only
"""Lock the batch's rows (in id order: concurrent replicas cannot deadlock) and read them."""

_TYPES = {
    "id": "uuid",
    "account_id": "uuid",
    "job_id": "uuid",
    "trigger": "text",
    "scheduled_for": "timestamptz",
    "status": "text",
    "attempt": "integer",
    "phase": "smallint",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
    "exit_code": "integer",
    "error": "text",
    "result": "text",
    "job_version": "integer",
    "parameters": "text",
    "queued_at": "timestamptz",
}
_NEW = ("id", "account_id", "job_id", "trigger", "scheduled_for", *STATE_COLUMNS, *FACT_COLUMNS)
_CHANGED = ("id", "trigger", "scheduled_for", *STATE_COLUMNS, *FACT_COLUMNS)
_LOG = {"execution_id": "uuid", "attempt": "integer", "seq": "integer", "entries": "text", "truncated": "boolean"}


def _unnest(columns: Sequence[str], types: Mapping[str, str], first: int, alias: str) -> str:
    """``unnest($first::t[], ...) AS alias(columns)``: one array parameter per column."""
    arrays = ", ".join(f"${first + i}::{types[c]}[]" for i, c in enumerate(columns))
    return f"unnest({arrays}) AS {alias}({', '.join(columns)})"


def _value(alias: str, column: str) -> str:
    return f"{alias}.{column}::jsonb" if column in JSON_COLUMNS else f"{alias}.{column}"


def _set(column: str) -> str:
    """An update's assignment: a fact fills only a null column; the rest is overwritten."""
    if column in FACT_COLUMNS:
        return f"{column} = COALESCE(e.{column}, {_value('u', column)})"
    return f"{column} = {_value('u', column)}"


_LOG_FIRST = 2 + len(_NEW) + len(_CHANGED)
_NOTIFY_PARAM = _LOG_FIRST + len(_LOG)
WRITE_SQL = f"""
WITH new AS (
    INSERT INTO job_api.executions ({", ".join(_NEW)}, created_at, updated_at)
    SELECT {", ".join(_value("n", c) for c in _NEW)}, $1, $1
    FROM {_unnest(_NEW, _TYPES, 2, "n")}
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
), changed AS (
    UPDATE job_api.executions AS e
    SET {", ".join(_set(c) for c in _CHANGED if c != "id")}, updated_at = $1
    FROM {_unnest(_CHANGED, _TYPES, 2 + len(_NEW), "u")}
    WHERE e.id = u.id
    RETURNING 1
), logged AS (
    INSERT INTO job_api.execution_logs ({", ".join(_LOG)}, received_at)
    SELECT {", ".join(_value("l", c) for c in _LOG)}, $1
    FROM {_unnest(list(_LOG), _LOG, _LOG_FIRST, "l")}
    ON CONFLICT (execution_id, attempt, seq) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM new) AS inserted,
    (SELECT count(*) FROM (SELECT pg_notify('{NOTIFY_CHANNEL}', p) FROM unnest(${_NOTIFY_PARAM}::text[]) AS p) AS n)
        AS notified
"""  # noqa: S608 - constants only
"""Insert the new rows ($2…: arrays of ``_NEW``; a row someone else created first is skipped, and
``inserted`` says so), update the changed ones (arrays of ``_CHANGED``), insert the log batches (a
repeated one is dropped) and notify the followers, with ``$1`` as the time of it all."""


def _json(value: Any) -> str | None:
    """A JSONB column's parameter: SQL NULL for None (``none_as_null``, as the tables declare), and what
    JSONB refuses (a NUL character, NaN, Infinity: any producer may send them) made storable."""
    if value is None:
        return None
    text = json.dumps(value, separators=(",", ":"))
    if _UNSTORABLE_JSON.search(text):  # rare: the value is cleaned and written again
        text = json.dumps(storable_value(value), separators=(",", ":"))
    return text


def _column(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS:
        return _json(value)
    return storable_text(value) if isinstance(value, str) else value


def _arrays(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[list[Any]]:
    return [[_column(c, row[c]) for row in rows] for c in columns]


RECONNECT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    OSError,
)
"""A batch that failed with one of these met a broken connection (a database restart): worth one more try."""


class Recording:
    """The recording transaction's statements on job-api's own pool, connected at the first batch.

    Connecting lazily keeps construction synchronous and lets the pool outlive the consumers that use
    it: :meth:`close` goes after they have stopped. A connection the database dropped while it sat in
    the pool fails the batch that meets it with one of :data:`RECONNECT_ERRORS`, and the pool replaces it.
    """

    def __init__(self, dsn: str, *, size: int = 2) -> None:
        self._dsn = dsn
        self._size = size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def close(self) -> None:
        """Close the pool (if a batch opened it)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[RecordingTransaction]:
        """``async with recording.transaction() as batch``: one batch's transaction (rolled back on an error)."""
        pool = self._pool or await self._open()
        async with checkout(pool) as connection, connection.transaction():
            yield RecordingTransaction(connection)

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await open_statement_pool(self._dsn, size=self._size, service="job-api", name="recording")
            return self._pool


class RecordingTransaction:
    """One batch: :meth:`lock` its rows, then :meth:`write` what the events changed."""

    def __init__(self, connection: asyncpg.Connection | PoolConnectionProxy) -> None:
        self._connection = connection

    async def lock(self, ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
        """The rows of ``ids`` that exist, locked, as dicts of :data:`ROW_COLUMNS` (``result`` parsed)."""
        rows = []
        for record in await self._connection.fetch(LOCK_SQL, list(ids)):
            row = dict(record)
            if row["result"] is not None:
                row["result"] = json.loads(row["result"])
            rows.append(row)
        return rows

    async def write(
        self,
        now: datetime,
        *,
        new: Sequence[Mapping[str, Any]],
        changed: Sequence[Mapping[str, Any]],
        logs: Sequence[Mapping[str, Any]],
        notify: Sequence[uuid.UUID],
    ) -> int:
        """Write the batch (rows as dicts of :data:`ROW_COLUMNS` and :data:`FACT_COLUMNS`, logs of ``_LOG``);
        how many new rows went in."""
        args = [
            now,
            *_arrays(new, _NEW),
            *_arrays(changed, _CHANGED),
            *_arrays(logs, list(_LOG)),
            notify_payloads(notify),
        ]
        inserted = await self._connection.fetchval(WRITE_SQL, *args)
        return int(inserted)
