"""automation-schedule: the pure fire-time maths of the Automation Platform's scheduler.

No I/O and no database: parse a job's schedule once (`parse_schedule`), then ask it for fire
times (`Schedule.next_after`, `Schedule.iter_after`, `preview`); the API checks a job's schedule
with `validate_schedule`. Cron is evaluated in the wall time of an IANA zone with explicit DST
rules (`GapPolicy`, `OverlapPolicy`); ``@every`` and one-offs are absolute. Every refusal is a
`ScheduleError` naming the field and the reason. The syntax and the rules are described in the
modules `automation_schedule.cron`, `automation_schedule.wallclock` and
`automation_schedule.schedule`, and for users in ``docs/schedules.md``.
"""

from automation_schedule.errors import ScheduleError
from automation_schedule.jitter import jitter_offset
from automation_schedule.schedule import Schedule, ScheduleKind, parse_schedule
from automation_schedule.timetext import parse_go_duration
from automation_schedule.validation import MAX_PREVIEW, NEVER_FIRES_HORIZON, preview, validate_schedule
from automation_schedule.wallclock import GapPolicy, OverlapPolicy

__all__ = [
    "MAX_PREVIEW",
    "NEVER_FIRES_HORIZON",
    "GapPolicy",
    "OverlapPolicy",
    "Schedule",
    "ScheduleError",
    "ScheduleKind",
    "jitter_offset",
    "parse_go_duration",
    "parse_schedule",
    "preview",
    "validate_schedule",
]
