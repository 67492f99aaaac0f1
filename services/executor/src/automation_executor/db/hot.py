"""The executor's two hot statements, one round trip each, on a small asyncpg pool of its own.

Every run claims its attempt and later records its outcome. Through the ORM session each of these was
a pool checkout with pre-ping (``BEGIN``, ``SELECT 1``, ``ROLLBACK``), ``BEGIN``, two or three
statements and ``COMMIT``: about eight round trips, most of the executor's own CPU per run. Here each
is one prepared statement run in autocommit mode (a single statement is its own transaction): the
attempt's state change and its outbox messages are data-modifying CTEs of that one statement, so they
still commit together or not at all.

- :meth:`HotPath.claim`: insert the ``running`` attempt unless it exists or its execution has a
  remembered cancellation, with ``execution.started`` in the outbox. False says only "not claimed":
  the caller works out why on the general (session) path.
- :meth:`HotPath.record`: compare-and-set of a ``running`` attempt held by ``run_id`` to its ending,
  with the ending's messages in the outbox. False: the run no longer holds the attempt (or the row
  was recorded by an earlier try whose answer was lost; the caller checks).

The relay is woken in process (``wake``, the replica's own :meth:`OutboxRelay.wake`) once a statement
has committed outbox rows, not by ``pg_notify``. A notification costs far more than it looks:
PostgreSQL serialises the commits of notifying transactions on one lock and signals every backend
that listens in the database, on any channel, and each of those then runs a transaction of its own
to read the queue. With the executor's and job-api's relays and job-api's log watch listening, a
run's two notifications cost ~2.5 transactions and 15-30 % of PostgreSQL's CPU per run
(docs/benchmarks.md). Rows of a replica that died between the commit and its drain are published by
the other replicas' relays at their next poll (``AUTOMATION_OUTBOX_POLL_SECONDS``).

The pool never needs a reset between uses (these statements leave no session state behind), so a
connection goes back to it without a round trip. A broken connection raises (``asyncpg`` and OS
errors), and the callers treat that as before: a failed claim leaves the message to be redelivered,
a failed record is retried.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from automation_db.statements import checkout, open_statement_pool

SCHEMA = "executor"


def _outbox_tail(source: str, flag: str) -> str:
    """The end both hot statements share: insert the outbox rows ($1-$5: arrays of their columns) once
    ``source`` (the attempt's CTE) wrote its row, and report whether ``source`` did (as ``flag``) and
    whether any outbox row was written (``written``: the relay is to be woken)."""
    # Only this module's constants and CTE names go into the text.
    return f"""
, sent AS (
    INSERT INTO {SCHEMA}.outbox (event_id, exchange, routing_key, body, headers)
    SELECT m.event_id, m.exchange, m.routing_key, m.body, m.headers::jsonb
    FROM {source}, unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])
        AS m(event_id, exchange, routing_key, body, headers)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM {source}) AS {flag}, EXISTS (SELECT 1 FROM sent) AS written
"""  # noqa: S608


CLAIM_SQL = """
WITH claimed AS (
    INSERT INTO executor.attempts (
        execution_id, attempt, job_id, account_id, job_version, trigger, worker_id,
        requested_at, started_at, status, run_id, lease_expires_at, request
    )
    SELECT $6::uuid, $7::integer, $8::uuid, $9::uuid, $10::integer, $11::text, $12::text,
        $13::timestamptz, $14::timestamptz, 'running', $15::uuid,
        now() + $16::float8 * interval '1 second', $17::jsonb
    WHERE NOT EXISTS (SELECT 1 FROM executor.cancellations WHERE execution_id = $6::uuid)
    ON CONFLICT (execution_id, attempt) DO NOTHING
    RETURNING 1
)
""" + _outbox_tail("claimed", "claimed")  # noqa: S608 - constants only
"""Claim a new attempt with its outbox rows ($1-$5: arrays of the rows' columns)."""

RECORDED_COLUMNS = (
    "status",
    "finished_at",
    "exit_code",
    "error",
    "will_retry",
    "next_attempt_at",
    "lease_expires_at",
    "request",
)
"""The columns an ending of a run that ran sets (see ``followups._row_values``); others take the session path."""

RECORD_SQL = """
WITH done AS (
    UPDATE executor.attempts
    SET status = $9, finished_at = $10, exit_code = $11, error = $12, will_retry = $13,
        next_attempt_at = $14, lease_expires_at = NULL, request = NULL, updated_at = now()
    WHERE execution_id = $6 AND attempt = $7 AND run_id = $8 AND status = 'running'
    RETURNING 1
)
""" + _outbox_tail("done", "recorded")  # noqa: S608 - constants only
"""Record a running attempt's ending (compare-and-set on ``run_id``) with its outbox rows."""


def _outbox_arrays(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Outbox rows (:func:`automation_messaging.outbox.outbox_row`) as the five arrays the statements take."""
    return [
        [row["event_id"] for row in rows],
        [row["exchange"] for row in rows],
        [row["routing_key"] for row in rows],
        [row["body"] for row in rows],
        [json.dumps(row["headers"], separators=(",", ":")) for row in rows],
    ]


class HotPath:
    """The claim and the record of the common case, one statement each.

    ``wake`` is called after a statement committed outbox rows (the replica's relay: see the module).
    """

    def __init__(self, pool: asyncpg.Pool, wake: Callable[[], None] | None = None) -> None:
        self._pool = pool
        self._wake = wake

    @classmethod
    async def open(
        cls, dsn: str, *, size: int, service: str = "executor", wake: Callable[[], None] | None = None
    ) -> HotPath:
        """Connect a pool of at most ``size`` connections (one at first): ``<service>-hot``, pool ``hot``."""
        return cls(await open_statement_pool(dsn, size=size, service=service, name="hot"), wake)

    def _written(self, result: asyncpg.Record | None) -> asyncpg.Record:
        assert result is not None  # the statements' final SELECT always returns its one row
        if result["written"] and self._wake is not None:
            self._wake()
        return result

    async def close(self) -> None:
        await self._pool.close()

    async def claim(
        self, row: Mapping[str, Any], outbox_rows: Sequence[Mapping[str, Any]], lease_seconds: float
    ) -> bool:
        """Insert a ``running`` attempt (``row``: its column values) with its outbox rows; whether it was."""
        args = [
            *_outbox_arrays(outbox_rows),
            row["execution_id"],
            row["attempt"],
            row["job_id"],
            row["account_id"],
            row["job_version"],
            row["trigger"],
            row["worker_id"],
            row["requested_at"],
            row["started_at"],
            row["run_id"],
            float(lease_seconds),
            row["request"],
        ]
        async with checkout(self._pool) as conn:
            result = await conn.fetchrow(CLAIM_SQL, *args)
        return bool(self._written(result)["claimed"])

    async def record(
        self,
        execution_id: uuid.UUID,
        attempt: int,
        run_id: uuid.UUID,
        values: Mapping[str, Any],
        outbox_rows: Sequence[Mapping[str, Any]],
    ) -> bool:
        """Compare-and-set the attempt held by ``run_id`` to ``values``, with its outbox rows; whether it was."""
        finished_at: datetime | None = values["finished_at"]
        args = [
            *_outbox_arrays(outbox_rows),
            execution_id,
            attempt,
            run_id,
            values["status"],
            finished_at,
            values["exit_code"],
            values["error"],
            values["will_retry"],
            values["next_attempt_at"],
        ]
        async with checkout(self._pool) as conn:
            result = await conn.fetchrow(RECORD_SQL, *args)
        return bool(self._written(result)["recorded"])

    @staticmethod
    def handles(values: Mapping[str, Any]) -> bool:
        """Whether :meth:`record` writes every column of ``values`` (lost endings set more)."""
        return set(values) == set(RECORDED_COLUMNS) and values["lease_expires_at"] is None and values["request"] is None
