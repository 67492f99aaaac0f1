"""The one exception this package raises for a schedule it cannot accept.

`ScheduleError` is a `ValueError`, so callers that only care about "bad input" can catch that; the API
turns it into a problem+json answer naming `field` and quoting `reason`.
"""

from __future__ import annotations

__all__ = ["ScheduleError"]


class ScheduleError(ValueError):
    """A schedule, time zone, window or argument that cannot be used.

    Attributes:
        reason: one human sentence saying exactly what is wrong, e.g.
            ``"day-of-month 30 never occurs in February"``.
        field: the input it is about: ``"schedule"``, ``"timezone"``, ``"start_at"``, ``"end_at"``,
            ``"anchor"``, ``"gap"``, ``"overlap"``, ``"count"``, ``"after"``, ``"now"``, ``"duration"``
            or ``"max_seconds"``.
    """

    reason: str
    field: str

    def __init__(self, reason: str, *, field: str = "schedule") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def __repr__(self) -> str:
        return f"ScheduleError({self.reason!r}, field={self.field!r})"
