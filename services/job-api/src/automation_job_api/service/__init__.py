"""job-api's use cases: one transaction each, state change and outbox rows together."""

from automation_job_api.service.accounts import AccountService
from automation_job_api.service.executions import ExecutionService, ForeignExecution
from automation_job_api.service.gauge import JobsGauge
from automation_job_api.service.jobs import JobService
from automation_job_api.service.paging import Page

__all__ = ["AccountService", "ExecutionService", "ForeignExecution", "JobService", "JobsGauge", "Page"]
