"""From naive wall-clock fire times to instants: time zones and the DST rules.

Cron is evaluated in the WALL time of the schedule's zone: croniter proposes naive wall times and
this module maps each to UTC itself, with zoneinfo's ``fold``, instead of trusting croniter's own
DST handling. A wall time is one of three kinds:

* ordinary: it happens once; it fires then.
* in a gap (spring forward skips it, e.g. 02:30 on the last Sunday of March in Berlin):
  `GapPolicy.SHIFT` fires once at the first instant after the gap (03:00 local, the transition
  itself); several slots in one gap (``*/15`` at 02:00, 02:15, 02:30, 02:45) collapse into that one
  fire, which also absorbs a slot at the gap's end. `GapPolicy.SKIP` does not fire.
* in an overlap (fall back repeats it, e.g. 02:30 on the last Sunday of October in Berlin):
  `OverlapPolicy.FIRST` fires at its first occurrence (``fold=0``), `OverlapPolicy.LAST` at its
  second (``fold=1``), `OverlapPolicy.BOTH` at both. A sub-hourly cron thus fires each slot of the
  repeated hour once (FIRST: during the first pass, then nothing until the hour after), or in both
  passes (BOTH).

Under FIRST or under LAST the mapping from wall time to instant never goes backwards, so the first
candidate that lands after the search start is the answer; BOTH is the earlier of the two. Two
details keep that true: a search that starts inside the first pass of an overlap but wants
second-pass times looks back to the overlap's start, and one that starts in the second pass but
wants first-pass times jumps to the overlap's end. Zone offsets come from zoneinfo, whose
transitions fall on whole seconds; a transition instant is found by bisection between two
instants whose offsets differ.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from automation_schedule.errors import ScheduleError

__all__ = ["GapPolicy", "NaiveSearch", "OverlapPolicy", "load_zone", "next_in_zone"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# Names that exist in zoneinfo but say nothing portable: the host's own zone, and aliases of files.
_UNUSABLE_ZONES = frozenset({"localtime", "posixrules", "Factory"})


class GapPolicy(StrEnum):
    """What a wall time that spring-forward skips does."""

    SHIFT = "shift"  # fire once at the first instant after the gap
    SKIP = "skip"  # do not fire


class OverlapPolicy(StrEnum):
    """Which occurrence of a wall time that fall-back repeats fires."""

    FIRST = "first"
    LAST = "last"
    BOTH = "both"


class NaiveSearch(Protocol):
    """Something that proposes naive wall-clock fire times, such as a `CronEngine`."""

    def next_naive(self, cursor: datetime) -> datetime | None:
        """The first candidate strictly after `cursor` (to the second), or None."""
        ...


@cache
def _zone_names_by_lower() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def load_zone(name: str) -> ZoneInfo:
    """The IANA time zone called `name`.

    Raises:
        ScheduleError: (field ``"timezone"``) for an unknown, malformed or host-dependent name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError("time zone is empty; use an IANA name such as Europe/Berlin or UTC", field="timezone")
    if name in _UNUSABLE_ZONES or name.startswith(("posix/", "right/")):
        raise ScheduleError(
            f"{name!r} is not a usable time zone; use an IANA name such as Europe/Berlin", field="timezone"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    known = _zone_names_by_lower().get(name.strip().lower())
    hint = f" (did you mean {known!r}?)" if known else "; use an IANA name such as Europe/Berlin or UTC"
    raise ScheduleError(f"unknown time zone {name!r}{hint}", field="timezone")


def _offset_at(zone: ZoneInfo, seconds: int) -> timedelta | None:
    return (_EPOCH + timedelta(seconds=seconds)).astimezone(zone).utcoffset()


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant in (before, after] at which the zone's UTC offset changes (offsets there differ)."""
    low = (before - _EPOCH) // _SECOND
    high = -((_EPOCH - after) // _SECOND)  # ceiling
    offset_low = _offset_at(zone, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(zone, middle) == offset_low:
            low = middle
        else:
            high = middle
    return _EPOCH + timedelta(seconds=high)


def _offsets(wall: datetime, zone: ZoneInfo) -> tuple[timedelta, timedelta]:
    """The UTC offsets of a naive wall time read with fold=0 and with fold=1."""
    # A ZoneInfo always gives an offset, never None.
    first = cast(timedelta, wall.replace(tzinfo=zone).utcoffset())
    second = cast(timedelta, wall.replace(tzinfo=zone, fold=1).utcoffset())
    return first, second


def _start_cursor(after: datetime, zone: ZoneInfo, fold: int) -> datetime:
    """The naive wall time to search from so that no fire after `after` is missed for this fold."""
    local = after.astimezone(zone)
    cursor = local.replace(tzinfo=None, fold=0)
    own, other = _offsets(cursor, zone)
    if own == other:
        return cursor
    # `after` lies in a repeated span: [start, end) of wall time, passed once with the larger
    # (earlier) offset `own` and again with the smaller one `other`.
    if local.fold == 0 and fold == 1:
        # First pass, second-pass times wanted: even the span's start comes again later.
        turn = _transition(zone, after, after + (own - other))
        return (turn + other).replace(tzinfo=None) - _SECOND
    if local.fold == 1 and fold == 0:
        # Second pass, first-pass times wanted: the rest of the span is already behind.
        turn = _transition(zone, after - (own - other), after)
        return (turn + own).replace(tzinfo=None) - _SECOND
    return cursor


def _next_for_fold(search: NaiveSearch, zone: ZoneInfo, after: datetime, gap: GapPolicy, fold: int) -> datetime | None:
    cursor = _start_cursor(after, zone, fold)
    while (wall := search.next_naive(cursor)) is not None:
        first, second = _offsets(wall, zone)
        if first == second:
            instant = (wall - first).replace(tzinfo=UTC)
        elif first > second:  # repeated wall time: fold=0 is the earlier, larger offset
            instant = (wall - (first if fold == 0 else second)).replace(tzinfo=UTC)
        else:  # skipped wall time: fold=0 reads it with the offset before the gap
            instant = _transition(zone, (wall - second).replace(tzinfo=UTC), (wall - first).replace(tzinfo=UTC))
            if gap is GapPolicy.SKIP:
                cursor = (instant + second).replace(tzinfo=None) - _SECOND  # resume at the gap's end
                continue
        if instant > after:
            return instant
        cursor = wall
    return None


def next_in_zone(
    search: NaiveSearch, zone: ZoneInfo, after: datetime, gap: GapPolicy, overlap: OverlapPolicy
) -> datetime | None:
    """The first fire strictly after the aware instant `after`, as aware UTC, or None.

    `search` proposes wall-clock times in `zone`; `gap` and `overlap` decide what the ones that
    DST skips or repeats do (see the module docstring).
    """
    try:
        if overlap is OverlapPolicy.FIRST:
            return _next_for_fold(search, zone, after, gap, 0)
        if overlap is OverlapPolicy.LAST:
            return _next_for_fold(search, zone, after, gap, 1)
        first = _next_for_fold(search, zone, after, gap, 0)
        second = _next_for_fold(search, zone, after, gap, 1)
    except OverflowError:  # searching past year 9999
        return None
    if first is None or second is None:
        return first or second
    return min(first, second)
