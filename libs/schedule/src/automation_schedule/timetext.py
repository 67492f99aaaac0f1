"""Parsing the two textual time forms schedules use: Go durations and RFC 3339 instants.

Go durations (``time.ParseDuration``): a sequence of decimal numbers, each with an optional fraction
and a unit, e.g. ``"90s"``, ``"1h30m"``, ``"1.5h"``, ``"300ms"``, ``"2h45m30.5s"``. Units are ``ns``,
``us`` (also ``µs`` / ``μs``), ``ms``, ``s``, ``m`` and ``h``. A leading ``+`` is accepted as Go does;
negative, zero, empty and malformed durations are rejected. Arithmetic is exact (integer
nanoseconds, like Go, with Go's ~292-year limit); the result is truncated to the microsecond that
`timedelta` can hold.

RFC 3339 instants must carry a UTC offset (``Z`` or ``±hh:mm``): a bare local time would be
ambiguous at DST changes, and one-off jobs name a single instant.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from automation_schedule.errors import ScheduleError

__all__ = ["parse_go_duration", "parse_rfc3339"]

_NS_PER_UNIT: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN, as Go accepts
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_UNITS_HINT = "ns, us, µs, ms, s, m or h"
_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
# One component: digits, an optional fraction (at least one digit on one side of the dot), a unit.
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_go_duration(text: str) -> timedelta:
    """Parse a positive Go duration string such as ``"1h30m"`` into a `timedelta`.

    Raises:
        ScheduleError: (field ``"duration"``) when the text is empty, malformed, has an unknown or
            missing unit, is negative or zero, or exceeds Go's range.
    """
    if not isinstance(text, str):
        raise ScheduleError(f"a duration must be a string, not {type(text).__name__}", field="duration")
    if text == "":
        raise ScheduleError("duration is empty; write it like 90s, 15m or 1h30m", field="duration")
    if text.startswith("-"):
        raise ScheduleError(f"duration {text!r} is negative; it must be positive", field="duration")
    rest = text.removeprefix("+")
    if rest in ("", "0"):
        reason = "has no number" if rest == "" else "is zero; it must be positive"
        raise ScheduleError(f"duration {text!r} {reason}", field="duration")
    total_ns = 0
    pos = 0
    while pos < len(rest):
        nanos, pos = _component(text, rest, pos)
        total_ns += nanos
        if total_ns > _MAX_NS:
            raise ScheduleError(f"duration {text!r} is too large (Go's limit is about 292 years)", field="duration")
    if total_ns == 0:
        raise ScheduleError(f"duration {text!r} is zero; it must be positive", field="duration")
    if total_ns < 1_000:
        raise ScheduleError(
            f"duration {text!r} is shorter than one microsecond, the finest resolution kept", field="duration"
        )
    return timedelta(microseconds=total_ns // 1_000)


def _component(text: str, rest: str, pos: int) -> tuple[int, int]:
    """The nanoseconds of the number-and-unit at `pos` in `rest`, and where it ends."""
    match = _COMPONENT.match(rest, pos)
    assert match is not None  # every part of the pattern may be empty, so it always matches
    whole, frac, unit = match.group(1), match.group(2) or "", match.group(3)
    if not whole and not frac:
        raise ScheduleError(f"duration {text!r} is not valid: expected a number at {rest[pos:]!r}", field="duration")
    if unit == "":
        raise ScheduleError(
            f"duration {text!r} is missing a unit after {rest[pos : match.end()]!r} (use {_UNITS_HINT})",
            field="duration",
        )
    scale = _NS_PER_UNIT.get(unit)
    if scale is None:
        raise ScheduleError(f"duration {text!r} has unknown unit {unit!r} (use {_UNITS_HINT})", field="duration")
    nanos = int(whole or "0") * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
    return nanos, match.end()


_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
# Anything that starts like a calendar date is meant as a one-off instant, not a cron expression.
RFC3339_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]|$)", re.ASCII)


def parse_rfc3339(text: str, *, field: str = "schedule") -> datetime:
    """Parse an RFC 3339 instant with a UTC offset, e.g. ``2026-12-01T09:00:00+01:00``, as aware UTC.

    Fractions beyond microseconds are truncated. A space may stand for the ``T`` (RFC 3339 section
    5.6 allows it).

    Raises:
        ScheduleError: when the text is not RFC 3339, names an impossible date or time, or has no
            UTC offset.
    """
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ScheduleError(
            f"{text!r} is not an RFC 3339 instant; write it like 2026-12-01T09:00:00+01:00", field=field
        )
    if match.group("tz") is None:
        raise ScheduleError(f"one-off time {text!r} has no UTC offset; add Z or one like +01:00", field=field)
    tz_text = match.group("tz")
    if tz_text in ("Z", "z"):
        tz = UTC
    else:
        sign = -1 if tz_text[0] == "-" else 1
        hours, minutes = int(tz_text[1:3]), int(tz_text[4:6])
        if hours > 23 or minutes > 59:
            raise ScheduleError(f"one-off time {text!r} has an impossible UTC offset {tz_text}", field=field)
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    frac = (match.group("frac") or "").ljust(6, "0")[:6]
    try:
        year, month, day = (int(part) for part in match.group("date").split("-"))
        hour, minute, second = int(match.group("h")), int(match.group("m")), int(match.group("s"))
        local = datetime(year, month, day, hour, minute, second, int(frac), tzinfo=tz)
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ScheduleError(f"one-off time {text!r} is not a real date and time: {exc}", field=field) from exc
