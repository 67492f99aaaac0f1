"""Schedules: parsing and the next fire time.

A `Schedule` is parsed once and then answers `Schedule.next_after` cheaply: ``@every`` is O(1)
arithmetic, one-offs a comparison, and cron reuses the croniter objects compiled at parse time.

Kinds
    ``cron``: a 5- or 6-field cron expression or a macro (``@hourly``, ``@daily``/``@midnight``,
    ``@weekly``, ``@monthly``, ``@yearly``/``@annually``); see `automation_schedule.cron` for the
    syntax and `automation_schedule.wallclock` for time zones and DST.

    ``every``: ``@every <go duration>``, at least one second. It fires at ``anchor + k * interval``
    for k = 0, 1, 2, ...: the anchor itself when it is still ahead, and never drifting with how long
    runs take, because each fire is computed from the anchor and not from the previous run. The
    anchor is the ``anchor`` argument, else ``start_at``, else the Unix epoch (so an unanchored
    interval is still deterministic: ``@every 1h`` fires on the hour, UTC). Durations are absolute,
    so DST does not move it.

    ``once``: an RFC 3339 instant with a UTC offset, bare or after ``@at``; it fires once.

Windows
    ``start_at`` and ``end_at`` bound any schedule: no fire before ``start_at`` or after ``end_at``
    (both inclusive). ``end_at`` before ``start_at`` is rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

from automation_schedule.cron import MACROS, CronEngine, engine_for, parse_cron
from automation_schedule.errors import ScheduleError
from automation_schedule.timetext import RFC3339_PREFIX, parse_go_duration, parse_rfc3339
from automation_schedule.wallclock import GapPolicy, OverlapPolicy, load_zone, next_in_zone

__all__ = ["MIN_INTERVAL", "Schedule", "ScheduleKind", "aware_utc", "parse_schedule"]

ScheduleKind = Literal["cron", "every", "once"]

MIN_INTERVAL = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule; build it with `parse_schedule`. Immutable, hashable, thread-safe.

    Attributes:
        kind: ``"cron"``, ``"every"`` or ``"once"``.
        expression: the schedule text as given (surrounding blanks removed).
        timezone: the IANA zone cron is evaluated in (kept, though unused, for the other kinds).
        start_at, end_at: the optional window, aware UTC.
        anchor: the ``@every`` grid origin, aware UTC (None for the other kinds).
        gap, overlap: the DST policies cron uses.
        cron: the cron expression searched (macros expanded), for ``cron``.
        interval: the ``@every`` interval.
        at: the one-off instant, aware UTC.
    """

    kind: ScheduleKind
    expression: str
    timezone: str
    start_at: datetime | None = None
    end_at: datetime | None = None
    anchor: datetime | None = None
    gap: GapPolicy = GapPolicy.SHIFT
    overlap: OverlapPolicy = OverlapPolicy.FIRST
    cron: str | None = None
    interval: timedelta | None = None
    at: datetime | None = None
    _zone: ZoneInfo | None = field(default=None, repr=False, compare=False)
    _engine: CronEngine | None = field(default=None, repr=False, compare=False)

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after the aware instant `after`, as aware UTC.

        None when the schedule fires no more (a one-off that has passed, an ended window, or a
        cron with no match within croniter's 50-year reach).

        Raises:
            ScheduleError: (field ``"after"``) when `after` is naive.
        """
        if after.utcoffset() is None:
            raise ScheduleError("after must be a timezone-aware datetime", field="after")
        start_at = self.start_at
        if start_at is not None and after < start_at:
            after = start_at - _TICK  # so that start_at itself may fire (after < start_at: no overflow)
        found: datetime | None
        if self._engine is not None and self._zone is not None:
            found = next_in_zone(self._engine, self._zone, after, self.gap, self.overlap)
        elif self.interval is not None and self.anchor is not None:
            found = self._next_every(after, self.anchor, self.interval)
        else:
            found = self.at if self.at is not None and self.at > after else None
        if found is None or (self.end_at is not None and found > self.end_at):
            return None
        return found

    @staticmethod
    def _next_every(after: datetime, anchor: datetime, interval: timedelta) -> datetime | None:
        if after < anchor:
            return anchor
        try:
            return anchor + ((after - anchor) // interval + 1) * interval
        except OverflowError:
            return None

    def __reduce__(self) -> tuple[Callable[..., Schedule], tuple[str]]:
        """Pickle and copy as the arguments that rebuild it; the compiled search is not state."""
        rebuild = partial(
            parse_schedule,
            timezone=self.timezone,
            start_at=self.start_at,
            end_at=self.end_at,
            anchor=self.anchor,
            gap=self.gap,
            overlap=self.overlap,
        )
        return (rebuild, (self.expression,))

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Successive fire times strictly after `after`, as aware UTC, until the schedule ends."""
        current = self.next_after(after)
        while current is not None:
            yield current
            current = self.next_after(current)


def aware_utc(value: datetime | None, name: str) -> datetime | None:
    """`value` as aware UTC; None stays None.

    Raises:
        ScheduleError: (field `name`) when `value` is not a datetime, is naive, or has no UTC value
            within years 1 to 9999 (``0001-01-01T00:00:00+14:00``).
    """
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ScheduleError(f"{name} must be a datetime, not {type(value).__name__}", field=name)
    if value.utcoffset() is None:
        raise ScheduleError(f"{name} must be timezone-aware (carry a UTC offset)", field=name)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ScheduleError(
            f"{name} {value.isoformat()} is outside the calendar once converted to UTC (years 1 to 9999)", field=name
        ) from None


_P = TypeVar("_P", GapPolicy, OverlapPolicy)


def _policy(kind: type[_P], value: _P | str, name: str) -> _P:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise ScheduleError(f"{name} policy {value!r} is not one of: {choices}", field=name) from None


def _parse_interval(text: str) -> timedelta:
    try:
        interval = parse_go_duration(text)
    except ScheduleError as exc:
        raise ScheduleError(f"@every needs a Go duration such as 15m or 1h30m: {exc.reason}") from None
    if interval < MIN_INTERVAL:
        raise ScheduleError(f"@every interval {text} is shorter than the minimum of 1s")
    return interval


def parse_schedule(
    expression: str,
    *,
    timezone: str = "UTC",
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    anchor: datetime | None = None,
    gap: GapPolicy = GapPolicy.SHIFT,
    overlap: OverlapPolicy = OverlapPolicy.FIRST,
) -> Schedule:
    """Parse a schedule once, for many `Schedule.next_after` calls.

    Checks the syntax, the time zone, the window, the policies and whatever can never fire on any
    date (``0 0 30 2 *``); `validate_schedule` adds the checks relative to now. `gap` and
    `overlap` also take their string values (``"skip"``, ``"both"``...).

    Raises:
        ScheduleError: naming the field and the reason.
    """
    zone = load_zone(timezone)
    start_utc = aware_utc(start_at, "start_at")
    end_utc = aware_utc(end_at, "end_at")
    anchor_utc = aware_utc(anchor, "anchor")
    if start_utc is not None and end_utc is not None and end_utc < start_utc:
        raise ScheduleError(f"end_at {end_utc.isoformat()} is before start_at {start_utc.isoformat()}", field="end_at")
    gap = _policy(GapPolicy, gap, "gap")
    overlap = _policy(OverlapPolicy, overlap, "overlap")
    if not isinstance(expression, str):
        raise ScheduleError(f"schedule must be a string, not {type(expression).__name__}")
    text = expression.strip()
    if not text:
        raise ScheduleError("schedule is empty; leave it null for jobs run by hand or by events")
    head, *tail = text.split(maxsplit=1)
    head, rest = head.lower(), (tail[0] if tail else "")
    if head == "@every":
        return Schedule(
            kind="every",
            expression=text,
            timezone=timezone,
            start_at=start_utc,
            end_at=end_utc,
            anchor=anchor_utc or start_utc or _EPOCH,
            interval=_parse_interval(rest),
        )
    if head == "@at" or RFC3339_PREFIX.match(text):
        at = parse_rfc3339(rest if head == "@at" else text)
        return Schedule(kind="once", expression=text, timezone=timezone, start_at=start_utc, end_at=end_utc, at=at)
    cron_text = text
    if head.startswith("@"):
        cron_text = MACROS.get(text.lower(), "")
        if not cron_text:
            known = ", ".join(["@every <duration>", "@at <time>", *MACROS])
            raise ScheduleError(f"unknown schedule macro {text!r}; known: {known}")
    spec = parse_cron(cron_text)
    return Schedule(
        kind="cron",
        expression=text,
        timezone=timezone,
        start_at=start_utc,
        end_at=end_utc,
        gap=gap,
        overlap=overlap,
        cron=spec.text,
        _zone=zone,
        _engine=engine_for(spec),
    )
