"""The attempt state machine and what follows a failed attempt (pure, no I/O).

One row per (execution, attempt)::

                   ┌──────────── handed back at shutdown ───────────┐
                   ▼                                                │
    (new) ──► running ──► succeeded | failed | timed_out | cancelled
                │  ▲
                │  └── released ◄── (SIGTERM drain: the message is requeued, the same attempt runs again)
                └────► lost        (its lease expired: the executor vanished; recorded by any replica)

    (new) ──► cancelled            (a cancellation was remembered before the attempt started)

Every transition out of ``running`` is a compare-and-set on ``(status = 'running', run_id)``, so an
attempt's outcome is recorded exactly once whoever tries. A ``lost`` attempt is followed, like a failed
one, by the next attempt (``attempt + 1``) when the job's ``retries`` allow it, unless the execution has
now killed ``max_lost`` executors: then it is poison and fails for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AttemptStatus = Literal["running", "released", "succeeded", "failed", "timed_out", "cancelled", "lost"]
ATTEMPT_STATUSES: tuple[AttemptStatus, ...] = (
    "running",
    "released",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "lost",
)
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out", "cancelled", "lost"})
"""An attempt in one of these states has its outcome recorded; any later delivery of it is a duplicate."""
LOST_ERROR = "executor lost"


def status_check_sql() -> str:
    """The CHECK constraint over ``attempts.status``."""
    return "status IN (" + ", ".join(f"'{s}'" for s in ATTEMPT_STATUSES) + ")"


def final_failure_reason(attempt: int, error: str) -> str:
    """``x-dead-letter-reason`` of a run whose last attempt failed."""
    return f"failed after {attempt} attempt{'' if attempt == 1 else 's'}: {error}"


def poison_reason(lost_total: int) -> str:
    """Error and dead-letter reason of a run that killed its executor ``lost_total`` times."""
    return f"poison: killed its executor {lost_total} time{'' if lost_total == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class AfterFailure:
    """What follows a failed (or lost) attempt.

    ``retry``: the next attempt is requested. Otherwise the execution is over: ``error`` goes into
    ``execution.failed`` and ``dead_letter_reason`` onto the run request sent to ``automation.dead``.
    """

    retry: bool
    error: str
    dead_letter_reason: str | None = None
    poison: bool = False


def after_failure(
    *,
    attempt: int,
    retries: int,
    error: str,
    permanent: bool = False,
    lost_total: int = 0,
    max_lost: int = 3,
) -> AfterFailure:
    """Decide between a retry and the final failure.

    ``retries`` counts retries after the first attempt (``retries: 2`` allows attempts 1-3);
    ``permanent`` failures (a definition this executor cannot run) never retry; ``lost_total`` is the
    number of lost attempts of the execution so far, this one included when it is the lost one.
    """
    if lost_total > 0 and lost_total >= max_lost:
        reason = poison_reason(lost_total)
        return AfterFailure(retry=False, error=reason, dead_letter_reason=reason, poison=True)
    if not permanent and attempt <= retries:
        return AfterFailure(retry=True, error=error)
    return AfterFailure(retry=False, error=error, dead_letter_reason=final_failure_reason(attempt, error))
