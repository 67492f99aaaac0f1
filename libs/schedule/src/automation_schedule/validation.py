"""Checks relative to now, and previews: what the API runs before it accepts a job's schedule.

`parse_schedule` already rejects what is malformed or impossible on any date. `validate_schedule`
adds what depends on the clock: a one-off in the past, a window that ends before the first fire,
and anything else that would not fire within `NEVER_FIRES_HORIZON` (five years) of now, which is
found by simply searching ahead that far (``0 0 * 2 MON#5``, say, next fires in 2044).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice

from automation_schedule.errors import ScheduleError
from automation_schedule.schedule import Schedule, aware_utc, parse_schedule
from automation_schedule.wallclock import GapPolicy, OverlapPolicy

__all__ = ["MAX_PREVIEW", "NEVER_FIRES_HORIZON", "preview", "validate_schedule"]

MAX_PREVIEW = 1000
NEVER_FIRES_HORIZON = timedelta(days=1827)  # five years, leap days included


def validate_schedule(
    expression: str | None,
    *,
    timezone: str = "UTC",
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    anchor: datetime | None = None,
    gap: GapPolicy = GapPolicy.SHIFT,
    overlap: OverlapPolicy = OverlapPolicy.FIRST,
    now: datetime | None = None,
) -> None:
    """Raise `ScheduleError` unless the schedule is usable and fires at least once from `now`.

    A None expression (a job run by hand or by events) is fine; its time zone is still checked.
    `now` defaults to the current time.

    Raises:
        ScheduleError: naming the field and the reason, e.g. ``"day-of-month 31 never occurs in
            April"``, ``"one-off time 2020-01-01T00:00:00+00:00 is in the past"`` or
            ``"schedule never fires: no fire time in the next 5 years"``.
    """
    if expression is None:  # still check the zone, window and policies the job carries
        parse_schedule(
            "@hourly", timezone=timezone, start_at=start_at, end_at=end_at, anchor=anchor, gap=gap, overlap=overlap
        )
        return
    schedule = parse_schedule(
        expression, timezone=timezone, start_at=start_at, end_at=end_at, anchor=anchor, gap=gap, overlap=overlap
    )
    current = aware_utc(now, "now") or datetime.now(UTC)
    if schedule.at is not None:
        _check_one_off(schedule, schedule.at, current)
    origin = max(current, schedule.start_at) if schedule.start_at is not None else current
    first = schedule.next_after(current)
    if first is not None and first - origin <= NEVER_FIRES_HORIZON:
        return
    if schedule.end_at is not None:
        unbounded = replace(schedule, end_at=None).next_after(current)
        if unbounded is not None and unbounded > schedule.end_at:
            raise ScheduleError(
                f"end_at {schedule.end_at.isoformat()} is before the first fire time {unbounded.isoformat()}",
                field="end_at",
            )
    raise ScheduleError("schedule never fires: no fire time in the next 5 years")


def _check_one_off(schedule: Schedule, at: datetime, now: datetime) -> None:
    if at <= now:
        raise ScheduleError(f"one-off time {at.isoformat()} is in the past (now is {now.isoformat()})")
    if schedule.start_at is not None and at < schedule.start_at:
        raise ScheduleError(
            f"one-off time {at.isoformat()} is before start_at {schedule.start_at.isoformat()}", field="start_at"
        )
    if schedule.end_at is not None and at > schedule.end_at:
        raise ScheduleError(
            f"end_at {schedule.end_at.isoformat()} is before the one-off time {at.isoformat()}", field="end_at"
        )


def preview(schedule: Schedule, *, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire times strictly after `after` (fewer if the schedule ends), aware UTC.

    Raises:
        ScheduleError: (field ``"count"``) unless 1 <= count <= 1000; (field ``"after"``) when
            `after` is naive.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PREVIEW:
        raise ScheduleError(f"count must be a whole number from 1 to {MAX_PREVIEW}, not {count!r}", field="count")
    return list(islice(schedule.iter_after(after), count))
