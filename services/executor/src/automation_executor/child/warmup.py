"""The handler of the fork server's warm-up run (:func:`automation_executor.child.main.prepare_fork`).

A module of its own, so that the warm-up imports nothing else into the fork server: which handler
modules the server holds stays the business of the runs (docs/executor.md, "once per replica").
"""

from __future__ import annotations

from typing import Any

automation_handlers = ["automation_executor.child.warmup:noop"]


def noop(_ctx: Any) -> None:
    """Do nothing."""
