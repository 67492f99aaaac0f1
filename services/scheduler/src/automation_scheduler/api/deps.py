"""Typed dependencies of the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from automation_core.errors import Unavailable
from automation_scheduler.bootstrap import Scheduler


def get_scheduler(request: Request) -> Scheduler:
    """The scheduler built by the lifespan."""
    scheduler: Scheduler | None = getattr(request.app.state, "scheduler", None)
    if scheduler is None:
        raise Unavailable("the scheduler is starting")
    return scheduler


SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]
