"""Deterministic per-job jitter, to spread jobs that share a schedule (every ``@hourly`` job firing
at :00) without making any one job's fire times unpredictable.

The offset is a pure function of the job id: a 64-bit BLAKE2b hash scaled into [0, max). It is
stable across processes and replicas (unlike Python's salted ``hash``), so every scheduler replica
computes the same fire time for a job.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from automation_schedule.errors import ScheduleError

__all__ = ["jitter_offset"]


def jitter_offset(job_id: str, max_seconds: float) -> timedelta:
    """A fixed offset for `job_id`, with ``timedelta(0) <= offset < max_seconds`` (to the microsecond).

    ``max_seconds == 0`` means no jitter and gives ``timedelta(0)``.

    Raises:
        ScheduleError: (field ``"max_seconds"``) when `max_seconds` is negative or not finite.
    """
    if not math.isfinite(max_seconds) or max_seconds < 0:
        raise ScheduleError(f"max jitter must be zero or more seconds, not {max_seconds!r}", field="max_seconds")
    span = math.floor(max_seconds * 1_000_000)  # microseconds; the offset stays below it
    if span == 0:
        return timedelta(0)
    digest = hashlib.blake2b(job_id.encode("utf-8"), digest_size=8, person=b"autojitter").digest()
    return timedelta(microseconds=(int.from_bytes(digest, "big") * span) >> 64)
