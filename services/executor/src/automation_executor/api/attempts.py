"""``GET /api/v1/attempts?execution_id=``: the attempt history of an execution.

An account sees only its own executions' attempts (another account's execution answers an empty
list, never its data); the admin sees all. The cursor is opaque.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from automation_core.cursors import decode_cursor_text, encode_cursor_text
from automation_core.errors import InvalidInput
from automation_core.http import CurrentPrincipal
from automation_core.openapi import problems
from automation_executor.api.deps import ExecutorStateDep
from automation_executor.api.schemas import AttemptOut, AttemptPage

router = APIRouter(tags=["attempts"])
MAX_LIMIT = 200


def encode_cursor(attempt: int) -> str:
    """The cursor that continues after ``attempt``."""
    return encode_cursor_text(f"a:{attempt}")


def decode_cursor(cursor: str) -> int:
    """The attempt a cursor continues after; InvalidInput when it is not one of ours."""
    try:
        kind, _, value = decode_cursor_text(cursor).partition(":")
        attempt = int(value)
    except ValueError as exc:
        raise InvalidInput("not a cursor from this endpoint", field="cursor") from exc
    if kind != "a" or attempt < 0:
        raise InvalidInput("not a cursor from this endpoint", field="cursor")
    return attempt


@router.get(
    "/attempts",
    response_model=AttemptPage,
    summary="Attempt history of an execution",
    responses=problems(422, 503),
)
async def list_attempts(
    principal: CurrentPrincipal,
    state: ExecutorStateDep,
    execution_id: Annotated[uuid.UUID, Query(description="The execution whose attempts to list")],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> AttemptPage:
    after = decode_cursor(cursor) if cursor else 0
    account = None if principal.is_admin else principal.require_account()
    rows = await state.service.attempts_of(execution_id, account_id=account, after_attempt=after, limit=limit + 1)
    items = [AttemptOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].attempt) if len(rows) > limit else None
    return AttemptPage(items=items, next_cursor=next_cursor)
