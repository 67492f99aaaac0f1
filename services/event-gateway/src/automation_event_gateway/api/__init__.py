"""HTTP routes of the gateway under ``/api/v1`` (health and metrics come from ``create_service_app``)."""

from fastapi import APIRouter

from automation_event_gateway.api.event_types import router as event_types_router
from automation_event_gateway.api.events import router as events_router

router = APIRouter()
router.include_router(events_router)
router.include_router(event_types_router)

__all__ = ["router"]
