"""Dependencies of the routes, declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from automation_browser_pool.state import BrowserPoolState


def get_state(request: Request) -> BrowserPoolState:
    """The service state the lifespan stored."""
    state: BrowserPoolState = request.app.state.browser_pool
    return state


State = Annotated[BrowserPoolState, Depends(get_state)]
