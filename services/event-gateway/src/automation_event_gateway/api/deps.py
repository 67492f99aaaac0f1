"""Typed dependencies of the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from automation_core.errors import Unavailable
from automation_event_gateway.bootstrap import Gateway


def get_gateway(request: Request) -> Gateway:
    """The gateway's parts, set by the lifespan; 503 while it is not running."""
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if gateway is None:
        raise Unavailable("the event-gateway is starting or stopping")
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
