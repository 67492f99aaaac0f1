"""The public REST API under ``/api/v1``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from automation_job_api.api import accounts, dead_letters, executions, jobs

TAGS: list[dict[str, Any]] = [
    {"name": "accounts", "description": "Accounts and their API keys (creating accounts takes the admin token)."},
    {"name": "auth", "description": "Exchange an API key for a JWT that every service accepts."},
    {"name": "jobs", "description": "Job definitions of the caller's account, and manual runs."},
    {"name": "executions", "description": "What ran: the executions read model, logs (live too), cancellation."},
    {"name": "dead-letters", "description": "Every message dead-lettered in the platform (admin only)."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics (no credentials)."},
]


def api_router() -> APIRouter:
    """Every route of the public API."""
    router = APIRouter()
    for module in (accounts, jobs, executions, dead_letters):
        router.include_router(module.router)
    return router
