"""Resource limits the child sets on itself; every command it starts inherits them."""

from __future__ import annotations

from automation_executor.domain.protocol import Limits
from automation_executor.rlimits import Plan, apply_plan

CPU_HARD_EXTRA_SECONDS = 1
"""RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL this much later at the hard limit."""


def limit_plan(limits: Limits) -> tuple[Plan, list[str]]:
    """What to set for ``limits`` (see :mod:`automation_executor.rlimits`) and its description, for the log."""
    plan: Plan = [("RLIMIT_CORE", 0, 0), ("RLIMIT_NOFILE", limits.open_files, limits.open_files)]
    applied = ["core dumps off", f"open files {limits.open_files}"]
    if limits.address_space_bytes is not None:
        plan.append(("RLIMIT_AS", limits.address_space_bytes, limits.address_space_bytes))
        applied.append(f"address space {limits.address_space_bytes} bytes")
    if limits.cpu_seconds is not None:
        plan.append(("RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + CPU_HARD_EXTRA_SECONDS))
        applied.append(f"cpu {limits.cpu_seconds} s per process")
    if limits.file_size_bytes is not None:
        plan.append(("RLIMIT_FSIZE", limits.file_size_bytes, limits.file_size_bytes))
        applied.append(f"file size {limits.file_size_bytes} bytes")
    return plan, applied


def apply_limits(limits: Limits) -> list[str]:
    """Apply ``limits``; the descriptions of what was applied, for the log."""
    plan, applied = limit_plan(limits)
    apply_plan(plan)
    return applied
