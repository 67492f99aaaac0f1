"""Run the five services as local processes: ``python -m automation_suite up`` (``make dev``)."""

from automation_suite.supervisor import SERVICES, ServiceProcess, Suite, SuiteConfig, dev_environment

__all__ = ["SERVICES", "ServiceProcess", "Suite", "SuiteConfig", "dev_environment"]
