"""``POST /api/v1/events`` (CloudEvents HTTP binding) and the history: ``GET /api/v1/events[/{uuid}]``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from automation_core.errors import InvalidInput
from automation_core.http import CurrentPrincipal, current_principal
from automation_core.openapi import problems
from automation_core.storable import checks_its_own_body
from automation_event_gateway import metrics
from automation_event_gateway.api.deps import GatewayDep
from automation_event_gateway.api.models import BatchResultOut, EventListOut, EventOut, IngestResultOut
from automation_event_gateway.api.problems import problem_for
from automation_event_gateway.domain.binding import BATCH, STRUCTURED, Mode, read_submission
from automation_event_gateway.domain.cursor import EventCursor
from automation_event_gateway.domain.errors import EventRejected, RejectReason
from automation_event_gateway.domain.query import InvalidQuery, parse_filter
from automation_event_gateway.service import Outcome

router = APIRouter(prefix="/api/v1", tags=["events"], dependencies=[Depends(current_principal)])
MAX_LIMIT = 200

_EVENT_EXAMPLE = {
    "specversion": "1.0",
    "id": "b7d1c1c4-0a4e-4d55-9d0e-2f1d8f4b9a01",
    "source": "/inventory",
    "type": "inventory.synced",
    "time": "2026-11-23T12:00:00Z",
    "datacontenttype": "application/json",
    "data": {"site": "fra1", "items": 1200},
}
#: The answer's schema (the 202's, from the response model), also for the 200 of a repeat.
_RESULT_SCHEMA = {
    "anyOf": [{"$ref": "#/components/schemas/IngestResultOut"}, {"$ref": "#/components/schemas/BatchResultOut"}]
}
POST_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "Structured mode: one CloudEvent as JSON. Batch mode: a JSON array of CloudEvents. Binary mode "
            "(any other Content-Type): the attributes in ce-* headers (ce-specversion, ce-id, ce-source, "
            "ce-type; optional ce-time, ce-subject, ce-dataschema, ce-<extension>) and the data as the body."
        ),
        "content": {
            STRUCTURED: {"schema": {"type": "object"}, "example": _EVENT_EXAMPLE},
            BATCH: {"schema": {"type": "array", "items": {"type": "object"}}, "example": [_EVENT_EXAMPLE]},
            "application/json": {"schema": {}, "example": {"site": "fra1", "items": 1200}},
            "*/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "Every event was already kept (same source and id): nothing republished.",
            "content": {"application/json": {"schema": _RESULT_SCHEMA}},
        },
        "202": {"description": "Accepted: stored and queued for publication to automation.events."},
        "403": {"description": "A platform-owned event type from a caller who is not the admin."},
        "413": {"description": "Body or batch larger than the configured limits."},
        "415": {"description": "A charset the gateway cannot read (JSON must be UTF-8); `field` is `content-type`."},
        "422": {"description": "An invalid event; `field` names it (`type`, `ce-source`, `data.site`, `0.type`)."},
    },
}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise EventRejected(RejectReason.TOO_LARGE, f"the body must be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise EventRejected(RejectReason.TOO_LARGE, f"the body must be at most {limit} bytes")
    return bytes(body)


@router.post(
    "/events",
    summary="Post CloudEvents (structured, batch or binary mode)",
    status_code=202,
    response_model=IngestResultOut | BatchResultOut,
    responses=problems(403, 413, 415, 422, 503),
    openapi_extra=POST_OPENAPI,
)
@checks_its_own_body  # streamed against its size limit; NULs and non-finite numbers are refused as unstorable
async def post_events(request: Request, principal: CurrentPrincipal, gateway: GatewayDep) -> JSONResponse:
    """Store the events and publish them to ``automation.events`` (routing key = type), all or nothing."""
    settings = gateway.settings
    try:
        body = await _read_body(request, settings.events_max_body_bytes)
        submission = read_submission(
            request.headers.get("content-type"),
            request.headers.items(),
            body,
            max_batch=settings.events_max_batch,
        )
    except EventRejected as exc:
        metrics.count_rejected(exc.reason)
        raise problem_for(exc) from exc
    try:
        results = await gateway.events.submit(submission, principal)
    except EventRejected as exc:
        raise problem_for(exc) from exc
    accepted = sum(1 for result in results if result.status is Outcome.ACCEPTED)
    status = 202 if accepted else 200
    if submission.mode is Mode.BATCH:
        out: IngestResultOut | BatchResultOut = BatchResultOut(
            items=[IngestResultOut.of(result) for result in results],
            accepted=accepted,
            duplicates=len(results) - accepted,
        )
    else:
        out = IngestResultOut.of(results[0])
    return JSONResponse(out.model_dump(mode="json"), status_code=status)


@router.get(
    "/events",
    summary="The event history, newest first",
    response_model=EventListOut,
    responses=problems(422, 503),
)
async def list_events(
    *,
    gateway: GatewayDep,
    event_type: Annotated[
        str | None,
        Query(alias="type", description="An exact type, or an AMQP topic pattern: `*` one word, `#` any words"),
    ] = None,
    source: Annotated[str | None, Query(description="Exact source")] = None,
    subject: Annotated[str | None, Query(description="Exact subject")] = None,
    since: Annotated[str | None, Query(description="Received at or after (RFC 3339)")] = None,
    until: Annotated[str | None, Query(description="Received before (RFC 3339)")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> EventListOut:
    """Filter by type (exact or pattern), source, subject and reception time; cursor-paginated."""
    try:
        where = parse_filter(type=event_type, source=source, subject=subject, since=since, until=until)
    except InvalidQuery as exc:
        raise InvalidInput(f"{exc.field}: {exc.message}", field=exc.field) from exc
    after: EventCursor | None = None
    if cursor is not None:
        try:
            after = EventCursor.decode(cursor)
        except ValueError as exc:
            raise InvalidInput(f"cursor: {exc}", field="cursor") from exc
    page = await gateway.events.list(where, after=after, limit=limit)
    return EventListOut(items=[EventOut.of(row) for row in page.items], next_cursor=page.next_cursor)


@router.get(
    "/events/{event_uuid}", summary="One kept event", response_model=EventOut, responses=problems(404, 422, 503)
)
async def get_event(event_uuid: uuid.UUID, gateway: GatewayDep) -> EventOut:
    """The event the gateway keeps under ``event_uuid`` (from a POST answer or a listing)."""
    return EventOut.of(await gateway.events.get(event_uuid))
