"""The ``execution.cancel`` handler, for the two queues each replica reads ``automation.control`` from.

- ``executor.control.<worker id>``, the replica's own: every replica gets every cancel. It is durable
  and outlives the replica's connection (RabbitMQ deletes it 15 minutes after its replica is gone), so
  a cancel broadcast while the replica reconnects, or while RabbitMQ restarts, reaches it when it is back.
- ``executor.cancellations``, shared: one replica takes each cancel. It keeps a cancel sent while no
  replica was connected at all, until one remembers it.

Each replica remembers the cancellation in ``cancellations`` (idempotent, so all of them may), then
stops the execution if it runs here: SIGTERM to the child's process group, SIGKILL after
``AUTOMATION_EXECUTOR_KILL_GRACE_SECONDS``; the run's handler then records the attempt ``cancelled``
(``execution.cancelled`` with the reason; no retry). An execution not started yet is dropped when its
request arrives, on whichever replica. A replica that missed the broadcast learns of the cancellation
from its next heartbeat.
"""

from __future__ import annotations

from automation_contracts import CancelExecution, CloudEvent, ContractError
from automation_core.logging import bind_context, get_logger
from automation_executor import metrics
from automation_executor.leases import LeaseService
from automation_executor.pool import WorkerPool
from automation_messaging import DeadLetter, Delivery

log = get_logger(__name__)


class CancelHandler:
    """Handles deliveries from this replica's ``automation.control`` queue."""

    def __init__(self, *, leases: LeaseService, pool: WorkerPool, kill_grace: float) -> None:
        self._leases = leases
        self._pool = pool
        self._kill_grace = kill_grace

    async def handle(self, event: CloudEvent, delivery: Delivery) -> CloudEvent | None:
        """Remember the cancellation, then stop the execution's runs on this replica."""
        if event.type != "execution.cancel":
            log.info("control_message_ignored", event_type=event.type)
            return None
        try:
            cancel = delivery.parse(event, CancelExecution)
        except ContractError as exc:
            metrics.DEAD_LETTERS.labels("invalid_request").inc()
            raise DeadLetter(f"invalid execution.cancel: {exc}") from exc
        bind_context(execution_id=cancel.execution_id)
        remembered = await self._leases.remember_cancellation(cancel)
        stopping = [
            slot
            for slot in self._pool.of_execution(cancel.execution_id)
            if slot.request_stop("cancel", cancel.reason, self._kill_grace)
        ]
        log.info("cancellation_received", new=remembered, stopping_here=len(stopping), reason=cancel.reason)
        return None
