"""Test support: real PostgreSQL/RabbitMQ per test session, waiting helpers, service processes."""

from automation_testing.infra import Infra, fresh_database, fresh_vhost, require_infra
from automation_testing.waiting import wait_until

__all__ = ["Infra", "fresh_database", "fresh_vhost", "require_infra", "wait_until"]
