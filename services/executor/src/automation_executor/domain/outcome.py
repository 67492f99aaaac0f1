"""How one run of an execution's steps ended (the attempt statuses are in :mod:`.attempts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from automation_contracts.storable import storable_text

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

    def __post_init__(self) -> None:
        if self.error is not None:  # it may quote a step's error or a child's last words: stored as text, no NUL
            object.__setattr__(self, "error", storable_text(self.error))

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def event_type(self) -> str:
        """The terminal event type: ``execution.succeeded``, ``execution.failed`` or ``execution.timed_out``."""
        return f"execution.{self.status}"
