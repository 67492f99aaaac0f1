"""Resource limits the child sets on itself; every command it starts inherits them."""

from __future__ import annotations

import resource

from automation_executor.domain.protocol import Limits

CPU_HARD_EXTRA_SECONDS = 1
"""RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL this much later at the hard limit."""


def _lower(which: int, soft: int, hard: int | None = None) -> None:
    """Set a limit, never above the current hard limit (an unprivileged process cannot raise it)."""
    _, current_hard = resource.getrlimit(which)
    wanted_hard = soft if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        wanted_hard = min(wanted_hard, current_hard)
    resource.setrlimit(which, (min(soft, wanted_hard), wanted_hard))


def apply_limits(limits: Limits) -> list[str]:
    """Apply ``limits``; the descriptions of what was applied, for the log."""
    applied = ["core dumps off", f"open files {limits.open_files}"]
    _lower(resource.RLIMIT_CORE, 0)
    _lower(resource.RLIMIT_NOFILE, limits.open_files)
    if limits.address_space_bytes is not None:
        _lower(resource.RLIMIT_AS, limits.address_space_bytes)
        applied.append(f"address space {limits.address_space_bytes} bytes")
    if limits.cpu_seconds is not None:
        _lower(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + CPU_HARD_EXTRA_SECONDS)
        applied.append(f"cpu {limits.cpu_seconds} s per process")
    if limits.file_size_bytes is not None:
        _lower(resource.RLIMIT_FSIZE, limits.file_size_bytes)
        applied.append(f"file size {limits.file_size_bytes} bytes")
    return applied
