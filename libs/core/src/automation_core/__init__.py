"""Shared foundation of every Automation Platform service.

Settings, structured logging, Prometheus metrics, OpenTelemetry tracing, problem+json errors,
authentication and the HTTP application factory with ``/healthz``, ``/readyz`` and ``/metrics``.
"""

__version__ = "0.1.0"
