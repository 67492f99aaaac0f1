"""Values as PostgreSQL can keep them: text without NUL characters, JSON without NaN or Infinity.

PostgreSQL's ``text`` and ``jsonb`` refuse U+0000, and ``jsonb`` has no non-finite numbers. Output a
step prints (``printf 'a\\0b'``), a handler's return value or an event's data may hold either, and a
single such value made a whole recording transaction fail. What the platform writes of a run goes
through these first: a NUL becomes U+FFFD (the replacement character), a non-finite number ``null``.
"""

from __future__ import annotations

import math
from typing import Any

NUL = "\x00"
REPLACEMENT = "\ufffd"


def storable_text(text: str) -> str:
    """``text`` with every NUL replaced by U+FFFD (the same object when it has none)."""
    return text.replace(NUL, REPLACEMENT) if NUL in text else text


def storable_value(value: Any) -> Any:
    """A JSON value with :func:`storable_text` applied to every string and key, and NaN and the
    infinities as ``None`` (containers are copied)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: storable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_value(item) for item in value]
    return value
