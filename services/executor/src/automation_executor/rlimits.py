"""Setting resource limits by name, with the standard library only (the command server imports it).

A *plan* is a list of ``(name, soft, hard)`` with ``name`` a :mod:`resource` constant's name
(``"RLIMIT_AS"``): :func:`automation_executor.child.limits.limit_plan` makes one from a job's limits,
the child applies it to itself, and the command server (:mod:`automation_executor.forkserver.server`)
to a command just before ``exec``.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable

Plan = list[tuple[str, int, int]]


def lower(which: int, soft: int, hard: int) -> None:
    """Set a limit, never above the current hard limit (an unprivileged process cannot raise it)."""
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(which, (min(soft, hard), hard))


def apply_plan(plan: Iterable[tuple[str, int, int]]) -> None:
    """Apply every limit of ``plan`` (ValueError for a name :mod:`resource` does not know)."""
    for name, soft, hard in plan:
        if not name.startswith("RLIMIT_") or not hasattr(resource, name):
            raise ValueError(f"unknown resource limit {name!r}")
        lower(getattr(resource, name), int(soft), int(hard))
