"""Message contracts of the Automation Platform.

Pydantic models of every message's ``data``, the CloudEvents envelope, and the link to the JSON
Schemas in ``proto-schemas/`` that are the contract. Producers call :func:`build_event`;
consumers call :func:`validate_event`, then :func:`parse_data` with the model from
:data:`EVENT_MODELS`. Every failure is a :class:`ContractError` naming the field at fault.
"""

from automation_contracts.browser import (
    Artifact,
    BrowserAction,
    BrowserResult,
    BrowserTask,
    ClickAction,
    Cookie,
    EvaluateAction,
    ExtractAction,
    FillAction,
    GotoAction,
    PdfAction,
    PressAction,
    ScreenshotAction,
    SetCookiesAction,
    Viewport,
    WaitForAction,
)
from automation_contracts.envelope import CONTENT_TYPE, CORE_ATTRIBUTES, CloudEvent
from automation_contracts.errors import ContractError
from automation_contracts.executions import (
    CancelExecution,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionLog,
    ExecutionStarted,
    ExecutionSucceeded,
    LogEntry,
    LogStream,
    RunRequested,
    Trigger,
)
from automation_contracts.jobs import JobChanged, JobDeleted, JobSpec, RetryBackoff, StepSpec
from automation_contracts.registry import EVENT_MODELS, build_event, dataschema_for, parse_data, validate_event
from automation_contracts.schemas import (
    SCHEMAS_DIR_ENV,
    URN_PREFIX,
    load_schemas,
    schema_registry,
    schemas_dir,
    urn,
    validator_for,
)

__all__ = [
    "CONTENT_TYPE",
    "CORE_ATTRIBUTES",
    "EVENT_MODELS",
    "SCHEMAS_DIR_ENV",
    "URN_PREFIX",
    "Artifact",
    "BrowserAction",
    "BrowserResult",
    "BrowserTask",
    "CancelExecution",
    "ClickAction",
    "CloudEvent",
    "ContractError",
    "Cookie",
    "EvaluateAction",
    "ExecutionCancelled",
    "ExecutionFailed",
    "ExecutionLog",
    "ExecutionStarted",
    "ExecutionSucceeded",
    "ExtractAction",
    "FillAction",
    "GotoAction",
    "JobChanged",
    "JobDeleted",
    "JobSpec",
    "LogEntry",
    "LogStream",
    "PdfAction",
    "PressAction",
    "RetryBackoff",
    "RunRequested",
    "ScreenshotAction",
    "SetCookiesAction",
    "StepSpec",
    "Trigger",
    "Viewport",
    "WaitForAction",
    "build_event",
    "dataschema_for",
    "load_schemas",
    "parse_data",
    "schema_registry",
    "schemas_dir",
    "urn",
    "validate_event",
    "validator_for",
]
