"""The executor's HTTP API under ``/api/v1`` (attempt history, this worker's state)."""

from fastapi import APIRouter

from automation_executor.api.attempts import router as attempts_router
from automation_executor.api.workers import router as workers_router

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(attempts_router)
api_router.include_router(workers_router)

__all__ = ["api_router"]
