"""The outcome of running a task's actions, before it is stored and answered.

Values read from a page become JSON (outputs travel in the reply and in a ``jsonb`` column), and
browser errors become one readable line (Playwright appends a multi-line call log).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from automation_contracts.storable import storable_text

ArtifactKind = Literal["screenshot", "pdf"]
MAX_ERROR_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class CapturedArtifact:
    """A file an action produced, not yet stored."""

    action_index: int
    kind: ArtifactKind
    name: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class RunOutcome:
    """What running a task produced; ``error`` is set when an action failed (the rest did not run)."""

    title: str | None = None
    url: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    artifacts: list[CapturedArtifact] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def refused(cls, reason: str) -> RunOutcome:
        """A task that never reached a browser."""
        return cls(error=clean_text(reason))

    def fail(self, reason: str) -> None:
        self.error = clean_text(reason)


def clean_text(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    """``text`` without NUL characters (PostgreSQL text refuses them), cut to ``limit`` characters."""
    text = storable_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def describe_error(exc: BaseException) -> str:
    """One readable line for a browser error: the message without Playwright's call log."""
    message = str(exc).split("\nCall log:", 1)[0].strip()
    first, _, rest = message.partition("\n")
    detail = first if not rest.strip() else f"{first} {' '.join(rest.split())}"
    return clean_text(detail or type(exc).__name__)


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON: dates as ISO text, non-finite numbers as null, unknown objects as text."""
    result: Any
    if value is None or isinstance(value, bool | int):
        result = value
    elif isinstance(value, float):
        result = value if math.isfinite(value) else None
    elif isinstance(value, Mapping):
        result = {_text(k): to_json_value(v) for k, v in value.items()}
    elif isinstance(value, list | tuple | set | frozenset):
        result = [to_json_value(v) for v in value]
    elif isinstance(value, datetime | date):
        result = value.isoformat()
    else:
        result = _text(value)
    return result


def _text(value: Any) -> str:
    return storable_text(str(value))
