"""Setting resource limits by name, with the standard library only (the command server imports it).

A *plan* is a list of ``(name, soft, hard)`` with ``name`` a :mod:`resource` constant's name
(``"RLIMIT_AS"``): :func:`automation_executor.child.limits.limit_plan` makes one from a job's limits,
the child applies it to itself, and the command server (:mod:`automation_executor.forkserver.server`)
holds what it can of it itself (:func:`holdable`), so that the commands it starts inherit those limits,
and sets the rest (:func:`unmet`) on each command just before ``exec``.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable

Plan = list[tuple[str, int, int]]

MIN_HELD_OPEN_FILES = 64
"""The fewest open files a server holds as its own limit (it needs a dozen descriptors at most)."""
HELD_ADDRESS_SPACE_HEADROOM = 256 << 20
"""How far above its address space in use a server's own RLIMIT_AS must be for the server to hold it."""


def which(name: str) -> int:
    """The :mod:`resource` constant called ``name`` (ValueError for a name it does not know)."""
    if not name.startswith("RLIMIT_") or not hasattr(resource, name):
        raise ValueError(f"unknown resource limit {name!r}")
    return int(getattr(resource, name))


def _least(a: int, b: int) -> int:
    """The lower of two limits, :data:`resource.RLIM_INFINITY` (-1) being the highest."""
    if a == resource.RLIM_INFINITY:
        return b
    if b == resource.RLIM_INFINITY:
        return a
    return min(a, b)


def target(number: int, soft: int, hard: int) -> tuple[int, int]:
    """The ``(soft, hard)`` :func:`lower` sets: never above the current hard limit (an unprivileged
    process cannot raise it), the soft limit never above the hard one."""
    _, current_hard = resource.getrlimit(number)
    hard = _least(hard, current_hard)
    return _least(soft, hard), hard


def lower(number: int, soft: int, hard: int) -> None:
    """Set a limit to its :func:`target`."""
    resource.setrlimit(number, target(number, soft, hard))


def apply_plan(plan: Iterable[tuple[str, int, int]]) -> None:
    """Apply every limit of ``plan`` (ValueError for a name :mod:`resource` does not know)."""
    for name, soft, hard in plan:
        lower(which(name), int(soft), int(hard))


def unmet(plan: Iterable[tuple[str, int, int]]) -> Plan:
    """The limits of ``plan`` that this process's own limits do not already equal: what a process it
    starts must still set on itself (a process inherits its parent's limits). ValueError as
    :func:`apply_plan`."""
    missing: Plan = []
    for name, soft, hard in plan:
        number = which(name)
        if target(number, int(soft), int(hard)) != resource.getrlimit(number):
            missing.append((name, int(soft), int(hard)))
    return missing


def holdable(plan: Iterable[tuple[str, int, int]], address_space_in_use: int | None) -> Plan:
    """The limits of ``plan`` a long-lived server can live under itself without harm.

    - core dumps and file size: always (a server writes to sockets and pipes only);
    - open files: from :data:`MIN_HELD_OPEN_FILES` up;
    - address space: when it is :data:`HELD_ADDRESS_SPACE_HEADROOM` above ``address_space_in_use``
      (the server's size; None: unknown, not held);
    - CPU seconds: never, since a process's CPU time only grows and the server would be killed at the
      limit, which counts per process (each command starts again from zero).
    """
    held: Plan = []
    for name, soft, hard in plan:
        limit = _least(int(soft), int(hard))
        unlimited = limit == resource.RLIM_INFINITY
        if name in ("RLIMIT_CORE", "RLIMIT_FSIZE"):
            keep = True
        elif name == "RLIMIT_NOFILE":
            keep = unlimited or limit >= MIN_HELD_OPEN_FILES
        elif name == "RLIMIT_AS":
            room = address_space_in_use is not None and limit >= address_space_in_use + HELD_ADDRESS_SPACE_HEADROOM
            keep = unlimited or room
        else:
            keep = False
        if keep:
            held.append((name, int(soft), int(hard)))
    return held
