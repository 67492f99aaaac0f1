"""How an attempt ended, and the attempt statuses recorded in the ``attempts`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AttemptStatus = Literal["running", "succeeded", "failed", "timed_out", "lost"]
FINISHED_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out"})
"""An attempt in one of these states has its outcome recorded; a delivery of it again is a duplicate."""
Outcome = Literal["succeeded", "failed", "timed_out"]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """The result of running an execution's steps once.

    ``permanent`` marks a failure that no retry can fix (the job definition cannot run), so no retry
    is scheduled whatever the job's ``retries``.
    """

    status: Outcome
    exit_code: int | None = None
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    permanent: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def event_type(self) -> str:
        """The terminal event type: ``execution.succeeded``, ``execution.failed`` or ``execution.timed_out``."""
        return f"execution.{self.status}"
