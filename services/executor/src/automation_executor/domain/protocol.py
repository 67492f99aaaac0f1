"""The protocol between the executor and its child process.

The executor writes one :class:`ChildSpec` as a JSON line on the child's stdin and keeps stdin open.
The child writes JSON lines on stdout, each one of: :class:`LogMessage` (a line of output or a note of
the child's own), :class:`RequestMessage` (the child asks the executor for a platform service),
:class:`StepMessage` (a step finished) and, last, :class:`ResultMessage` (how the run ended). Anything
the child writes on stderr is not protocol: the executor relays it as ``system`` log lines.

**The bridge.** The child has no broker connection, no credentials and a minimal environment. What only
the executor can do, it asks for with a :class:`RequestMessage` (``id`` chosen by the child, ``op`` one
of :data:`BridgeOp`, ``args`` the op's model below); the executor answers with one :class:`ReplyMessage`
line on the child's stdin carrying the same ``id``:

- ``secret`` (:class:`SecretArgs`): the value of a secret (the executor redacts it from then on);
- ``emit`` (:class:`EmitArgs`): publish an event to ``automation.events``; the reply is the event's id,
  type, source and subject;
- ``browser`` (:class:`BrowserArgs`): a ``browser.task`` to browser-pool; the reply is the
  ``browser.result`` data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

StepStatus = Literal["succeeded", "failed", "timed_out"]
LogStream = Literal["stdout", "stderr", "system"]  # as in the execution.log contract
BridgeOp = Literal["secret", "emit", "browser"]
Phase = Literal["check", "steps"]


DEFAULT_MAX_RESULT_BYTES = 96 * 1024 * 1024
"""The default of ``AUTOMATION_EXECUTOR_MAX_RESULT_BYTES``: the step outputs (check included) an attempt keeps,
as JSON. An ``http`` step may keep a 64 MiB body; the outcome event that carries them must still fit in one
RabbitMQ message (``max_message_size``, 128 MiB by default in RabbitMQ 3)."""
PROTOCOL_SLACK_BYTES = 1024 * 1024
"""What a protocol line may carry besides step outputs (its envelope, an error, a log line)."""


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
    job_id: str = ""
    steps: list[StepInput]
    check: StepInput | None = None
    parameters: dict[str, Any]
    event: dict[str, Any] | None = None
    limits: Limits = Limits()
    max_line_bytes: int = 8192
    stdout_tail_bytes: int = 4096
    http_max_body_bytes: int = 65536
    kill_grace_seconds: float = 5.0
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    """The most the step outputs of the run (its check's too) may take together, as JSON: a step whose
    output would pass it fails (its output is dropped). The executor reads protocol lines up to this plus
    :data:`PROTOCOL_SLACK_BYTES`."""
    path: str = "/usr/local/bin:/usr/bin:/bin"
    fast_path: bool = True
    """Whether a job of shell and python steps only may run without an event loop (the blocking path)."""

    def step_types(self) -> set[str]:
        """The types of the job's steps and of its check (what decides how the job runs)."""
        return {step.type for step in self.steps} | ({self.check.type} if self.check is not None else set())


class LogMessage(_Message):
    """A line of a step's output, or a ``system`` note of the child."""

    type: Literal["log"] = "log"
    ts: datetime
    stream: LogStream
    step: str | None = None
    text: str


class RequestMessage(_Message):
    """The child asks the executor for a platform service (see the module doc)."""

    type: Literal["request"] = "request"
    id: int
    op: BridgeOp
    step: str | None = None
    args: dict[str, Any]


class ReplyMessage(_Message):
    """The executor's answer to one :class:`RequestMessage` (on the child's stdin)."""

    type: Literal["reply"] = "reply"
    id: int
    ok: bool
    result: Any = None
    error: str | None = None


class SecretArgs(_Message):
    """``secret``: the value of the secret ``name``."""

    name: str


class EmitArgs(_Message):
    """``emit``: an event for ``automation.events``.

    ``key`` names the emission within the attempt (``<step>:<n>``); the event id is derived from the
    execution, the attempt and the key, so a rerun of a lost attempt emits the same ids again.
    """

    type: str
    source: str | None = None
    subject: str | None = None
    data: Any = None
    key: str


class BrowserArgs(_Message):
    """``browser``: the actions of a ``browser.task`` (checked by the executor against the contract)."""

    actions: list[dict[str, Any]]
    timeout_seconds: float = 30.0
    viewport: dict[str, Any] | None = None


class StepMessage(_Message):
    """A step ended; ``output`` is kept by the step's name for later templates and the result.

    ``phase`` tells the job's check step (run first) from its steps. ``handler``: the declared handler a
    ``python`` step loaded (whatever it did then), which the fork server may import ahead for the runs
    after this one (see ``AUTOMATION_EXECUTOR_PRELOAD_HANDLERS``).
    """

    type: Literal["step"] = "step"
    phase: Phase = "steps"
    name: str
    status: StepStatus
    output: Any = None
    exit_code: int | None = None
    error: str | None = None
    handler: str | None = None


class ResultMessage(_Message):
    """The run ended: the outputs of every step that produced one, and the failing step's error if any.

    With a check step, ``check_output`` is its output and ``performed`` whether the steps ran.
    """

    type: Literal["result"] = "result"
    status: StepStatus
    outputs: dict[str, Any]
    exit_code: int | None = None
    error: str | None = None
    failed_step: str | None = None
    check_output: Any = None
    performed: bool | None = None


AnyChildMessage = LogMessage | RequestMessage | StepMessage | ResultMessage
ChildMessage = Annotated[AnyChildMessage, Field(discriminator="type")]
CHILD_MESSAGE: TypeAdapter[AnyChildMessage] = TypeAdapter(ChildMessage)


def parse_child_line(line: bytes | bytearray) -> AnyChildMessage:
    """One protocol line (raises pydantic's ValidationError when it is not one)."""
    return CHILD_MESSAGE.validate_json(line)
