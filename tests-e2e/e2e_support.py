"""Types shared by the end-to-end fixtures and tests (on pytest's pythonpath)."""

from __future__ import annotations

from dataclasses import dataclass

from automation_suite import SuiteConfig


@dataclass
class Platform:
    """The running suite and how to reach it."""

    config: SuiteConfig
    admin_token: str
    amqp_url: str
    database_url: str

    def url(self, service: str) -> str:
        return self.config.url(service)


@dataclass
class Account:
    """An account created through job-api, with its API key and a JWT."""

    id: str
    api_key: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def jwt_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}
