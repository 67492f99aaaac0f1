"""Cron expressions: field grammar, normalisation, and the search over naive wall-clock times.

Syntax
    Five fields ``minute hour day-of-month month day-of-week``, or six with a LEADING seconds field
    ``second minute hour day-of-month month day-of-week``. Each field is a comma list of items ``*``,
    ``N``, ``A-B``, ``*/S``, ``N/S`` (from N to the end of the field), ``A-B/S``. A range whose end is
    before its start wraps around (``22-2`` in the hour field is 22, 23, 0, 1, 2). Months take
    ``JAN``-``DEC`` and days of week ``SUN``-``SAT``, in any case; day-of-week 0 and 7 are both
    Sunday. ``?`` means ``*`` in the two day fields. The special forms croniter supports:

    * day-of-month ``L``: the last day of the month (listable: ``1,L``);
    * day-of-month ``15W`` (or ``W15``): the weekday nearest the 15th within the month, alone in its field;
    * day-of-week ``FRI#3`` / ``5#3``: the 3rd Friday of the month (1-5);
    * day-of-week ``L5`` / ``5L`` / ``FRIL``: the last Friday of the month.
      ``#`` and ``L`` items cannot be mixed with plain days in one day-of-week field.

Day-of-month with day-of-week (the OR rule)
    When both day fields are restricted (neither is ``*`` nor ``?``), a day matches when EITHER
    matches: the classic Vixie-cron rule, and croniter's default (``day_or=True``, checked by this
    package's tests). ``0 0 1 * MON`` fires on the 1st of each month and on every Monday. As in
    croniter (and unlike Vixie cron's quirk), a field written with a leading ``*``, such as ``*/2``,
    still counts as restricted. This module applies the rule itself, by searching the two halves
    separately and taking the earlier match; that also gives ``L``, ``W`` and ``#`` a true OR
    (croniter on its own intersects those forms with the other day field).

Implementation
    Fields are parsed and range-checked here, so an error names the field and the reason; they
    are expanded to explicit values and only that normal form (plain values and ascending runs)
    reaches croniter, which keeps its quirks out (it reads ``5-5`` as "every minute" and has its
    own ideas about wrapping ranges). The compiled croniter objects live on a `CronEngine`, shared
    by all schedules with the same expression, which searches NAIVE wall-clock times; turning
    those into instants in a time zone, DST included, is `automation_schedule.wallclock`'s job.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from croniter import CroniterError, croniter

from automation_schedule.errors import ScheduleError

__all__ = ["MACROS", "CronEngine", "CronSpec", "engine_for", "parse_cron"]

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_TITLES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_NEAREST_WEEKDAY = re.compile(r"([0-9]+)w|w([0-9]+)", re.ASCII)
_FIELDS_HELP = "minute hour day-of-month month day-of-week"
# croniter needs a start time at construction; every search passes its own, so any fixed one will do.
_REFERENCE = datetime(2000, 1, 1)  # noqa: DTZ001 - croniter searches naive wall-clock times here


class _Field(NamedTuple):
    name: str
    low: int
    high: int  # highest value accepted as written (day-of-week: 7, another Sunday)
    cycle_high: int  # highest value of the cycle (day-of-week: 6)
    names: Mapping[str, int]


_SECOND = _Field("second", 0, 59, 59, {})
_MINUTE = _Field("minute", 0, 59, 59, {})
_HOUR = _Field("hour", 0, 23, 23, {})
_DOM = _Field("day-of-month", 1, 31, 31, {})
_MONTH = _Field("month", 1, 12, 12, {name: i + 1 for i, name in enumerate(_MONTH_NAMES)})
_DOW = _Field("day-of-week", 0, 7, 6, {name: i for i, name in enumerate(_DAY_NAMES)})


@dataclass(frozen=True, slots=True)
class _Parsed:
    text: str  # the field as croniter gets it
    restricted: bool  # anything but * or ?
    values: frozenset[int]  # the plain values (without L, W, # items)
    special: bool  # has an L, W or # item


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A parsed, normalised cron expression.

    Attributes:
        text: the expression as written, fields separated by single spaces.
        has_seconds: whether it has the leading seconds field.
        exprs: the croniter expressions to search (croniter's field order, explicit value lists);
            two when the OR rule splits the day fields, else one.
    """

    text: str
    has_seconds: bool
    exprs: tuple[str, ...]


def _error(reason: str) -> ScheduleError:
    return ScheduleError(reason, field="schedule")


@lru_cache(maxsize=8192)
def parse_cron(text: str) -> CronSpec:
    """Parse a 5- or 6-field cron expression, rejecting what is malformed or can never match.

    Raises:
        ScheduleError: with the field and the reason, e.g. ``"minute value 61 is out of range 0-59"``
            or ``"day-of-month 30 never occurs in February"``.
    """
    raw_fields = text.split()
    if len(raw_fields) not in (5, 6):
        raise _error(
            f"a cron expression needs 5 fields ({_FIELDS_HELP}) or 6 with a leading seconds field; "
            f"{text!r} has {len(raw_fields)}"
        )
    second = _parse_field(raw_fields[0], _SECOND) if len(raw_fields) == 6 else None
    minute, hour, dom, month, dow = (
        _parse_field(raw, spec) for raw, spec in zip(raw_fields[-5:], (_MINUTE, _HOUR, _DOM, _MONTH, _DOW), strict=True)
    )
    _check_days_possible(dom, month, dow)
    fields = [minute.text, hour.text, dom.text, month.text, dow.text]
    if second is not None:
        fields.append(second.text)  # croniter's own order puts seconds last
    if dom.restricted and dow.restricted:
        by_dom, by_dow = list(fields), list(fields)
        by_dom[4] = "*"
        by_dow[2] = "*"
        exprs: tuple[str, ...] = (" ".join(by_dom), " ".join(by_dow))
    else:
        exprs = (" ".join(fields),)
    return CronSpec(text=" ".join(raw_fields), has_seconds=second is not None, exprs=exprs)


def _parse_field(raw: str, spec: _Field) -> _Parsed:
    text = raw.lower()
    if text in ("*", "?"):
        if text == "?" and spec not in (_DOM, _DOW):
            raise _error(f"'?' is only allowed in the day-of-month and day-of-week fields, not in {spec.name}")
        return _Parsed("*", restricted=False, values=frozenset(), special=False)
    items = text.split(",")
    values: set[int] = set()
    specials: list[str] = []
    for item in items:
        if item == "":
            raise _error(f"{spec.name} field {raw!r} has an empty list item")
        special = _special_item(item, spec, many=len(items) > 1)
        if special is None:
            values.update(_expand_item(item, spec))
        else:
            specials.append(special)
    if specials and values and spec is _DOW:
        raise _error(f"day-of-week field {raw!r} mixes plain days with # or L items, which cannot be combined")
    parts = _runs(values, spec) + sorted(set(specials))
    return _Parsed(",".join(parts), restricted=True, values=frozenset(values), special=bool(specials))


def _runs(values: set[int], spec: _Field) -> list[str]:
    """Values as croniter items: ``*`` for the whole field, ``A-B`` for runs of three or more."""
    if not values:
        return []
    if len(values) == spec.cycle_high - spec.low + 1:
        return ["*"]
    ordered = sorted(values)
    items: list[str] = []
    first = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        if previous - first >= 2:
            items.append(f"{first}-{previous}")  # never an equal range, which croniter reads as "all"
        else:
            items.extend(str(v) for v in range(first, previous + 1))
        if value is not None:
            first = previous = value
    return items


def _special_item(item: str, spec: _Field, *, many: bool) -> str | None:
    """The croniter form of an ``L``, ``W`` or ``#`` item, or None for a plain item."""
    if spec is _DOM:
        if item == "l":
            return "l"
        if item == "lw":
            raise _error("day-of-month LW (last weekday of the month) is not supported; use L or a W day")
        if match := _NEAREST_WEEKDAY.fullmatch(item):
            day = int(match.group(1) or match.group(2))
            if not 1 <= day <= 31:
                raise _error(f"day-of-month value {day} in {item.upper()!r} is out of range 1-31")
            if many:
                raise _error(f"day-of-month {item.upper()!r} (nearest weekday) must be the field's only item")
            return f"{day}w"
        return None
    if spec is _DOW:
        if "#" in item:
            day_text, _, nth_text = item.partition("#")
            day = _value(day_text, spec, item) % 7
            if not _NUMBER.fullmatch(nth_text) or not 1 <= int(nth_text) <= 5:
                raise _error(f"day-of-week {item.upper()!r}: the number after # must be 1-5")
            return f"{day}#{int(nth_text)}"
        if item == "l":
            raise _error("day-of-week L needs a day: 5L or FRIL is the last Friday of the month")
        if item.startswith("l") or item.endswith("l"):
            day_text = item[1:] if item.startswith("l") else item[:-1]
            return f"l{_value(day_text, spec, item) % 7}"
    return None


def _expand_item(item: str, spec: _Field) -> set[int]:
    """The values of one plain item: ``*``, ``N``, ``A-B``, each optionally with ``/step``."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        span = spec.cycle_high - spec.low + 1
        if not _NUMBER.fullmatch(step_text):
            raise _error(f"{spec.name} step {step_text!r} in {item!r} is not a whole number")
        step = int(step_text)
        if not 1 <= step <= span:
            raise _error(f"{spec.name} step {step} in {item!r} is out of range 1-{span}")
    if base == "*":
        start, end = spec.low, spec.cycle_high
    elif "-" in base:
        first, _, last = base.partition("-")
        start, end = _value(first, spec, item), _value(last, spec, item)
    else:
        start = _value(base, spec, item)
        end = spec.high if slash else start
    if spec is _DOW and start == 7 and end < 7:
        start = 0  # "7-2": Sunday to Tuesday
    if start <= end:
        sequence = list(range(start, end + 1))
    else:  # wrapping range, e.g. hours 22-2
        sequence = [*range(start, spec.cycle_high + 1), *range(spec.low, end + 1)]
    chosen = sequence[::step]
    return {value % 7 for value in chosen} if spec is _DOW else set(chosen)


def _value(token: str, spec: _Field, item: str) -> int:
    if _NUMBER.fullmatch(token):
        value = int(token)
    elif token in spec.names:
        value = spec.names[token]
    else:
        hint = ""
        if spec.names:
            names = list(spec.names)
            hint = f" or a name {names[0].upper()}-{names[-1].upper()}"
        where = f" in {item.upper()!r}" if item != token else ""
        raise _error(f"{spec.name} value {token.upper()!r}{where} is not a number{hint}")
    if not spec.low <= value <= spec.high:
        raise _error(f"{spec.name} value {value} is out of range {spec.low}-{spec.high}")
    return value


def _check_days_possible(dom: _Parsed, month: _Parsed, dow: _Parsed) -> None:
    """Reject day-of-month lists that no chosen month is long enough for (``0 0 30 2 *``)."""
    if not dom.restricted or dom.special or dow.restricted or not month.restricted:
        return
    if min(dom.values) <= max(_LONGEST_MONTH[m - 1] for m in month.values):
        return
    days = ", ".join(str(day) for day in sorted(dom.values))
    titles = [_MONTH_TITLES[m - 1] for m in sorted(month.values)]
    months = titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} or {titles[-1]}"
    raise _error(f"day-of-month {days} never occurs in {months}")


@lru_cache(maxsize=8192)
def engine_for(spec: CronSpec) -> CronEngine:
    """The `CronEngine` for `spec`, shared by every schedule with the same expression.

    Jobs mostly share a few expressions, so sharing keeps a million schedules from holding a
    million copies of croniter's tables (about 1.5 kB each) and skips re-compiling them.
    """
    return CronEngine(spec)


class CronEngine:
    """The compiled croniter search for one `CronSpec`, over naive wall-clock times.

    Built once and reused for every search. croniter objects are stateful, so a lock makes sharing
    one engine between schedules and threads safe; uncontended it costs well under a microsecond.
    """

    __slots__ = ("_iters", "_lock")

    def __init__(self, spec: CronSpec) -> None:
        try:
            self._iters = tuple(croniter(expr, _REFERENCE, ret_type=datetime) for expr in spec.exprs)
        except CroniterError as exc:  # pragma: no cover - parse_cron admits only what croniter takes
            raise _error(f"cron expression {spec.text!r} is not valid: {exc}") from exc
        self._lock = threading.Lock()

    def next_naive(self, cursor: datetime) -> datetime | None:
        """The first matching naive wall time strictly after the naive `cursor`.

        Matches fall on whole seconds, so the cursor's microseconds are dropped first (croniter
        goes through float timestamps, which would round them). None when nothing matches within
        croniter's reach (50 years) or before year 9999.
        """
        start = cursor.replace(microsecond=0)
        best: datetime | None = None
        with self._lock:
            for it in self._iters:
                try:
                    found: datetime = it.get_next(datetime, start)
                except (ValueError, OverflowError):  # CroniterBadDateError is a ValueError
                    continue
                if best is None or found < best:
                    best = found
        return best
