"""Settings shared by all services: one pydantic-settings base on the ``AUTOMATION_`` prefix.

Each service subclasses :class:`ServiceSettings`, sets its own ``service_name`` and ``http_port`` defaults
and adds its own knobs. Settings are built once at start-up and passed down; nothing reads the
environment anywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32
EventLoopName = Literal["auto", "uvloop", "asyncio"]
"""``AUTOMATION_EVENT_LOOP``: ``auto`` is uvloop where it is installed, else asyncio's own loop."""


class ServiceSettings(BaseSettings):
    """Configuration common to the five services (environment variables ``AUTOMATION_*``)."""

    model_config = SettingsConfigDict(env_prefix="AUTOMATION_", extra="ignore", frozen=True)

    service_name: str = "automation"
    env: Literal["production", "development"] = "production"
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    otlp_endpoint: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "automation-job-api"
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=86400 * 30)
    admin_token: SecretStr | None = None
    amqp_prefetch: int = Field(default=32, ge=1, le=10_000)
    amqp_queue_type: Literal["quorum", "classic"] = "quorum"
    amqp_delivery_limit: int = Field(default=5, ge=1, le=1000)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_ping_after_idle_seconds: float = Field(default=5.0, ge=0, le=3600)
    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=3600)
    migrate_on_start: bool = True
    gc_freeze_after_startup: bool = True
    event_loop: EventLoopName = "auto"

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> ServiceSettings:
        if self.env != "production":
            return self
        if self.jwt_secret is None:
            raise ValueError(
                "AUTOMATION_JWT_SECRET is required in production (set AUTOMATION_ENV=development for a local run)"
            )
        if len(self.jwt_secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"AUTOMATION_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        token = self.admin_token.get_secret_value() if self.admin_token else None
        if token is not None and len(token) < MIN_SECRET_LENGTH:
            raise ValueError(f"AUTOMATION_ADMIN_TOKEN must be at least {MIN_SECRET_LENGTH} characters")
        return self

    @property
    def effective_jwt_secret(self) -> str:
        """The HS256 key; development falls back to a fixed, loudly insecure key."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return "insecure-development-key-do-not-use-in-production"
