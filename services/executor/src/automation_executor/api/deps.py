"""FastAPI dependencies of the executor API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from automation_core.errors import Unavailable
from automation_executor.state import ExecutorState


def get_executor_state(request: Request) -> ExecutorState:
    """The executor's state; 503 while the service is starting or stopping."""
    state = getattr(request.app.state, "executor", None)
    if not isinstance(state, ExecutorState):
        raise Unavailable("the executor is not running")
    return state


ExecutorStateDep = Annotated[ExecutorState, Depends(get_executor_state)]
