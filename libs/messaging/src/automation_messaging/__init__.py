"""Messaging over RabbitMQ (aio-pika): topology, confirmed publisher, consumer runner, outbox, request/reply."""

from automation_messaging.broker import CLOUDEVENTS_JSON, Broker, Publisher
from automation_messaging.consumer import REASON_HEADER, Consumer, DeadLetter, Delivery, Handler, RetryLater
from automation_messaging.outbox import OutboxRelay, enqueue, outbox_table
from automation_messaging.rpc import RpcClient, RpcConnectionLost, RpcTimeout
from automation_messaging.runtime import Runtime, open_runtime, service_main

__all__ = [
    "CLOUDEVENTS_JSON",
    "REASON_HEADER",
    "Broker",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Handler",
    "OutboxRelay",
    "Publisher",
    "RetryLater",
    "RpcClient",
    "RpcConnectionLost",
    "RpcTimeout",
    "Runtime",
    "enqueue",
    "open_runtime",
    "outbox_table",
    "service_main",
]
