"""The trivial jobs' steps, and whether this executor can run a no-op ``python`` step yet."""

from __future__ import annotations

from typing import Any

from automation_executor.domain.steps import CONFIG_MODELS, StepConfigError, parse_steps

SHELL_TRUE = "shell = one `true` shell step"
NOOP_HANDLER = "automation_executor.examples.handlers:noop"
"""The no-op handler the executor ships, declared in its examples manifest."""


def python_noop_step() -> tuple[dict[str, Any] | None, str]:
    """A no-op ``python`` step this executor accepts, or None; and a note saying which."""
    if "python" not in CONFIG_MODELS:
        return None, "python steps do not exist in this executor yet (shell jobs only)"
    step = {"name": "noop-python", "type": "python", "config": {"handler": NOOP_HANDLER}}
    try:
        parse_steps([step])
    except StepConfigError as exc:
        return None, f"the python step config was refused ({exc}); shell jobs only"
    return step, f"python = one no-op python step (handler {NOOP_HANDLER})"
