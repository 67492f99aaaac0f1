"""The protocol between the executor and its child process.

The executor writes one :class:`ChildSpec` as JSON on the child's stdin and closes it. The child writes
JSON lines on stdout, each one of: :class:`LogMessage` (a line of output or a note of the child's own),
:class:`StepMessage` (a step finished) and, last, :class:`ResultMessage` (how the run ended). Anything
the child writes on stderr is not protocol: the executor relays it as ``system`` log lines.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

StepStatus = Literal["succeeded", "failed", "timed_out"]
LogStream = Literal["stdout", "stderr", "system"]  # as in the execution.log contract


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Message):
    """Resource limits the child applies to itself (and so to every command it starts)."""

    open_files: int = 1024
    address_space_bytes: int | None = None
    cpu_seconds: int | None = None
    file_size_bytes: int | None = None


class StepInput(_Message):
    """One step as the job defines it; the child parses its config again."""

    name: str
    type: str
    config: dict[str, Any]
    timeout_seconds: int | None = None


class ChildSpec(_Message):
    """Everything the child needs to run one execution."""

    execution_id: str
    attempt: int
    steps: list[StepInput]
    parameters: dict[str, Any]
    event: dict[str, Any] | None = None
    limits: Limits = Limits()
    max_line_bytes: int = 8192
    stdout_tail_bytes: int = 4096
    http_max_body_bytes: int = 65536
    kill_grace_seconds: float = 5.0
    path: str = "/usr/local/bin:/usr/bin:/bin"


class LogMessage(_Message):
    """A line of a step's output, or a ``system`` note of the child."""

    type: Literal["log"] = "log"
    ts: datetime
    stream: LogStream
    step: str | None = None
    text: str


class StepMessage(_Message):
    """A step ended; ``output`` is kept by the step's name for later templates and the result."""

    type: Literal["step"] = "step"
    name: str
    status: StepStatus
    output: Any = None
    exit_code: int | None = None
    error: str | None = None


class ResultMessage(_Message):
    """The run ended: the outputs of every step that produced one, and the failing step's error if any."""

    type: Literal["result"] = "result"
    status: StepStatus
    outputs: dict[str, Any]
    exit_code: int | None = None
    error: str | None = None
    failed_step: str | None = None


ChildMessage = Annotated[LogMessage | StepMessage | ResultMessage, Field(discriminator="type")]
CHILD_MESSAGE: TypeAdapter[LogMessage | StepMessage | ResultMessage] = TypeAdapter(ChildMessage)


def parse_child_line(line: bytes) -> LogMessage | StepMessage | ResultMessage:
    """One protocol line (raises pydantic's ValidationError when it is not one)."""
    return CHILD_MESSAGE.validate_json(line)
