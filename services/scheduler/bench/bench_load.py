"""The benchmark's schedule mix and its bulk load into ``scheduler.schedules``.

**The mix.** N schedules offered at R fires/s, spread evenly:

- a share of 6-field cron schedules with one period ``Pc`` that cron can express (a divisor of a minute or
  of an hour, the one nearest to N/R), each at its own second offset (``3/5 * * * * *``,
  ``7 2/15 * * * *``): cron has one-second resolution, so all the cron slots of a second fall on that
  whole second, a burst of about ``share x R`` fires;
- the rest ``@every P`` with ``P`` chosen so that the two kinds add up to R, and anchors stepped by
  ``P / count``, so their slots are uniformly spread (one every ``1/R_every`` seconds).

**The load.** Row for row what the scheduler writes for a ``job.created``: two *template* jobs (one per
kind, paused so they never fire) go through the real path (``job.created`` on ``automation.events``,
the scheduler's consumer writes the rows), then ``INSERT ... SELECT`` clones each template server-side
with ``generate_series`` in chunks, overriding only the job id, account, name, schedule, anchor, state and
first fire time. Every other column, including any a later migration adds, is copied from the template,
so the rows stay what the consumer would have written. The first fire time of each clone is its first
slot at or after ``first_fire`` and at least a lead after its insert (computed in SQL, then checked
against ``automation_schedule`` on a sample). The consumer applies one job per transaction, the clone
50,000 rows per statement; the consumer's speed is not what this benchmark measures.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from automation_contracts import JobSpec
from automation_schedule import parse_schedule
from automation_scheduler.domain.compiled import scheduled_parameters

CRON_PERIODS_SECONDS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800)
CHUNK = 50_000
ACCOUNTS = 1000


@dataclass(frozen=True, slots=True)
class Mix:
    """How N schedules are split and phased to offer a steady fire rate."""

    size: int
    every_count: int
    every_period_ms: int
    cron_count: int
    cron_period: int
    """Seconds; divides a minute or an hour."""

    @classmethod
    def plan(cls, size: int, rate: float, cron_share: float) -> Mix:
        """The mix nearest to ``rate`` fires/s with ``cron_share`` of the schedules on cron."""
        if size < 2 or rate <= 0 or not 0 <= cron_share < 1:
            raise ValueError("need size >= 2, rate > 0 and 0 <= cron_share < 1")
        cron_count = round(size * cron_share)
        every_count = size - cron_count
        cron_period = min(CRON_PERIODS_SECONDS, key=lambda p: abs(p - size / rate))
        every_rate = rate - cron_count / cron_period
        if every_rate <= 0:
            raise ValueError("the cron share alone exceeds the rate; lower --cron-share")
        every_period_ms = max(1, round(every_count / every_rate * 1000))
        return cls(size, every_count, every_period_ms, cron_count, cron_period)

    @property
    def every_expression(self) -> str:
        ms = self.every_period_ms
        return f"@every {ms // 1000}s" if ms % 1000 == 0 else f"@every {ms}ms"

    @property
    def rate(self) -> float:
        """Fires per second offered by the mix."""
        return self.every_count * 1000 / self.every_period_ms + self.cron_count / self.cron_period

    @property
    def cron_burst(self) -> float:
        """Cron fires sharing each whole second."""
        return self.cron_count / self.cron_period

    def cron_expression(self, offset: int) -> str:
        """The cron schedule firing at second ``offset`` of each period."""
        if self.cron_period < 60:
            return f"{offset}/{self.cron_period} * * * * *"
        return f"{offset % 60} {offset // 60}/{self.cron_period // 60} * * * *"

    def slots_in(self, start: datetime, end: datetime, first_fire: datetime) -> int:
        """How many nominal slots the whole mix implies in ``[start, end)`` (start >= first_fire)."""
        span_us = _us(end) - _us(start)
        period_us = self.every_period_ms * 1000
        step_us = period_us / self.every_count
        base = _us(first_fire) - period_us
        every = sum(
            _grid_count(base + round(j * step_us), period_us, _us(start), _us(end)) for j in range(self.every_count)
        )
        full, extra = divmod(self.cron_count, self.cron_period)
        cron = 0
        for offset in range(self.cron_period):
            per_offset = full + (1 if offset < extra else 0)
            if per_offset:
                cron += per_offset * _grid_count(offset * 1_000_000, self.cron_period * 1_000_000, _us(start), _us(end))
        assert span_us >= 0
        return every + cron


def _us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _grid_count(origin_us: int, period_us: int, start_us: int, end_us: int) -> int:
    """Points ``origin + k * period`` in ``[start, end)``."""
    return max(0, math.ceil((end_us - origin_us) / period_us) - math.ceil((start_us - origin_us) / period_us))


async def clone_columns(conn: asyncpg.Connection) -> list[str]:
    """The columns of ``scheduler.schedules`` as they are now (migrations may have added some)."""
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'scheduler' AND table_name = 'schedules' ORDER BY ordinal_position"
    )
    return [str(r["column_name"]) for r in rows]


def _clone_sql(columns: list[str], overrides: dict[str, str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(overrides.get(c, f't."{c}"') for c in columns)
    return (
        f"INSERT INTO scheduler.schedules ({names}) SELECT {values}"  # noqa: S608 - names come from the catalog
        " FROM scheduler.schedules AS t, generate_series($2::bigint, $3::bigint) AS n WHERE t.job_id = $1"
    )


def _common(expression: str) -> dict[str, str]:
    return {
        "job_id": "gen_random_uuid()",
        "account_id": f"md5('bench-account-' || (n % {ACCOUNTS}))::uuid",
        "spec": (
            "jsonb_set(jsonb_set(jsonb_set(t.spec, '{name}', to_jsonb('bench-' || n)),"
            f" '{{schedule}}', to_jsonb(({expression})::text)), '{{enabled}}', 'true'::jsonb)"
        ),
        "expression": f"({expression})::text",
        "enabled": "true",
        "state": "'active'",
        "last_fire_at": "NULL",
        "created_at": "now()",
        "updated_at": "now()",
    }


async def load(
    conn: asyncpg.Connection,
    mix: Mix,
    *,
    every_template: uuid.UUID,
    cron_template: uuid.UUID,
    first_fire: datetime,
    lead: float,
    wake_channel: str,
    progress: bool = True,
) -> float:
    """Clone the templates into the mix's N active schedules; returns the seconds it took.

    ``@every`` clone j is anchored at ``first_fire - P + j * P / count``; cron clone k fires at second
    ``k mod Pc`` of each period. Each clone's first fire time is its first slot at or after
    ``max(first_fire, its insert time + lead)``: the scheduler runs during the load, and a clone inserted
    too late for its first slot skips to the next one on its grid rather than starting as a backlog. A
    NOTIFY on ``wake_channel`` after each chunk wakes the fire loop for the new rows.
    """
    started = time.perf_counter()
    columns = await clone_columns(conn)
    period_s = mix.every_period_ms / 1000
    step_s = period_s / mix.every_count
    target = "greatest($4::timestamptz, clock_timestamp() + make_interval(secs => $5::float8))"
    anchor = f"($4::timestamptz - make_interval(secs => {period_s}) + make_interval(secs => n * {step_s!r}))"
    periods = f"ceil(extract(epoch FROM ({target} - {anchor})) / {period_s})"
    every = _clone_sql(
        columns,
        _common(f"'{mix.every_expression}'")
        | {"anchor": anchor, "next_fire_at": f"({anchor} + make_interval(secs => {period_s} * {periods}))"},
    )
    offset = f"(n % {mix.cron_period})"
    first = f"ceil(extract(epoch FROM {target}))::bigint"
    cron = _clone_sql(
        columns,
        _common(_cron_sql_expression(mix, offset))
        | {
            "anchor": "now()",
            "next_fire_at": (
                f"to_timestamp({first} + ((({offset} - {first}) % {mix.cron_period}) + {mix.cron_period})"
                f" % {mix.cron_period})"
            ),
        },
    )
    kinds = (("@every", every, every_template, mix.every_count), ("cron", cron, cron_template, mix.cron_count))
    for kind, sql, template, count in kinds:
        for low in range(0, count, CHUNK):
            high = min(count, low + CHUNK)
            await conn.execute(sql, template, low, high - 1, first_fire, lead)
            await conn.execute("SELECT pg_notify($1, '')", wake_channel)
            if progress:
                print(f"    loaded {high:>9,} / {count:,} {kind} schedules", flush=True)
    await conn.execute("ANALYZE scheduler.schedules")
    return time.perf_counter() - started


def _cron_sql_expression(mix: Mix, offset: str) -> str:
    if mix.cron_period < 60:
        return f"({offset} || '/{mix.cron_period} * * * * *')"
    return f"(({offset} % 60) || ' ' || ({offset} / 60) || '/{mix.cron_period // 60} * * * *')"


async def verify_sample(conn: asyncpg.Connection, first_fire: datetime, latest: datetime, sample: int = 500) -> int:
    """Check clones against the scheduler's own fire-time maths; returns how many rows were checked.

    Each sampled clone not fired yet must have its first fire time on its schedule's grid as
    ``automation_schedule`` computes it, no earlier than the first slot at or after ``first_fire`` and no
    later than the first slot at or after ``latest`` (the load's end plus the lead). Its stored run
    parameters must be what the scheduler resolves from the clone's own spec.
    """
    rows = await conn.fetch(
        "SELECT job_id, spec::text AS spec, run_parameters::text AS run_parameters, expression, timezone, anchor,"
        " next_fire_at FROM scheduler.schedules"
        " WHERE state = 'active' AND last_fire_at IS NULL ORDER BY random() LIMIT $1",
        sample,
    )
    tick = timedelta(microseconds=1)
    for row in rows:
        check_parameters(row)
        schedule = parse_schedule(row["expression"], timezone=row["timezone"], anchor=row["anchor"])
        stored: datetime = row["next_fire_at"]
        earliest, last = schedule.next_after(first_fire - tick), schedule.next_after(latest - tick)
        on_grid = schedule.next_after(stored - tick) == stored
        if not on_grid or earliest is None or last is None or not earliest <= stored <= last:
            raise AssertionError(f"clone {dict(row)} is off its schedule (expected {earliest} .. {last})")
    return len(rows)


def check_parameters(row: asyncpg.Record) -> None:
    """A clone's stored run parameters against what the scheduler's own code resolves from its spec."""
    spec = JobSpec.model_validate(json.loads(row["spec"]))
    stored = json.loads(row["run_parameters"]) if row["run_parameters"] is not None else None
    if stored != scheduled_parameters(spec):
        raise AssertionError(f"clone {row['job_id']}: stored run parameters {stored} do not match its spec")
