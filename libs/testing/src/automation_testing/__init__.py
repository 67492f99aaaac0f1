"""Test support: real PostgreSQL/RabbitMQ per test session, waiting helpers, service processes."""

from automation_testing.infra import Infra, drop_broker_connections, fresh_database, fresh_vhost, require_infra
from automation_testing.waiting import wait_until

__all__ = ["Infra", "drop_broker_connections", "fresh_database", "fresh_vhost", "require_infra", "wait_until"]
