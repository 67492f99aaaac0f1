"""browser-pool's HTTP API under ``/api/v1`` (every route needs a credential)."""

from automation_browser_pool.api.routes import router

__all__ = ["router"]
