"""The schema registry: ``PUT/GET /api/v1/event-types/{type}`` and ``GET /api/v1/event-types``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from automation_core.errors import InvalidInput
from automation_core.http import CurrentPrincipal, current_principal
from automation_core.openapi import problems
from automation_event_gateway.api.deps import GatewayDep
from automation_event_gateway.api.models import EventTypeIn, EventTypeListOut, EventTypeOut
from automation_event_gateway.domain.cursor import decode_name_cursor, encode_name_cursor

router = APIRouter(prefix="/api/v1", tags=["event-types"], dependencies=[Depends(current_principal)])
MAX_LIMIT = 200


@router.put(
    "/event-types/{event_type}",
    summary="Register or replace an event type and its JSON Schema (admin)",
    response_model=EventTypeOut,
    responses={
        201: {"model": EventTypeOut, "description": "Registered"},
        200: {"description": "Replaced"},
        **problems(403, 422, 503),
    },
)
async def put_event_type(
    event_type: str, body: EventTypeIn, principal: CurrentPrincipal, gateway: GatewayDep, response: Response
) -> EventTypeOut:
    """From now on, posted events of this type must carry ``data`` valid against ``schema``."""
    principal.require_admin()
    view, created = await gateway.event_types.put(event_type, description=body.description, schema=body.json_schema)
    response.status_code = 201 if created else 200
    return EventTypeOut.of(view)


@router.get(
    "/event-types",
    summary="Registered and platform event types, by name",
    response_model=EventTypeListOut,
    responses=problems(422, 503),
)
async def list_event_types(
    *,
    gateway: GatewayDep,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> EventTypeListOut:
    """Every type with a schema: the platform's (``builtin``) and the registered ones."""
    after: str | None = None
    if cursor is not None:
        try:
            after = decode_name_cursor(cursor)
        except ValueError as exc:
            raise InvalidInput(f"cursor: {exc}", field="cursor") from exc
    views, last = await gateway.event_types.list(after=after, limit=limit)
    return EventTypeListOut(
        items=[EventTypeOut.of(view) for view in views],
        next_cursor=encode_name_cursor(last) if last is not None else None,
    )


@router.get(
    "/event-types/{event_type}",
    summary="One event type and its schema",
    response_model=EventTypeOut,
    responses=problems(404, 422, 503),
)
async def get_event_type(event_type: str, gateway: GatewayDep) -> EventTypeOut:
    return EventTypeOut.of(await gateway.event_types.get(event_type))
