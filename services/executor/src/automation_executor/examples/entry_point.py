"""A handler declared through the ``automation-handlers`` entry-point group (see the executor's pyproject)."""

from __future__ import annotations

from automation_executor.handlers import Context


def ping(ctx: Context) -> dict[str, str]:
    """Answer ``pong`` with the step's name."""
    return {"pong": ctx.step}
