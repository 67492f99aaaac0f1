"""Queue arguments are the ones every service must agree on (a mismatch fails declaration)."""

from automation_messaging.consumer import queue_label
from automation_messaging.topology import DLX, WORK_QUEUES, delay_queue_arguments, work_queue_arguments


def test_quorum_work_queues_dead_letter_with_a_delivery_limit() -> None:
    args = work_queue_arguments("quorum", 5, WORK_QUEUES[0])
    assert args == {"x-dead-letter-exchange": DLX, "x-queue-type": "quorum", "x-delivery-limit": 5}


def test_classic_queues_have_no_delivery_limit() -> None:
    assert "x-delivery-limit" not in work_queue_arguments("classic", 5)


def test_external_event_types_do_not_become_metric_labels() -> None:
    from automation_messaging.broker import routing_key_label

    assert routing_key_label("automation.events", "execution.succeeded") == "execution.succeeded"
    assert routing_key_label("automation.events", "user.controlled.abc123") == "external"
    assert routing_key_label("automation.commands", "run.requested") == "run.requested"
    assert routing_key_label("", "amq.rabbitmq.reply-to.xyz") == "reply"


def test_quorum_delay_queues_dead_letter_at_least_once_and_classic_ones_as_before() -> None:
    quorum = delay_queue_arguments(1000, "automation.commands", "run.requested", "quorum")
    assert quorum == {
        "x-message-ttl": 1000,
        "x-dead-letter-exchange": "automation.commands",
        "x-dead-letter-routing-key": "run.requested",
        "x-queue-type": "quorum",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    classic = delay_queue_arguments(1000, "automation.commands", "run.requested", "classic")
    assert classic == {
        "x-message-ttl": 1000,
        "x-dead-letter-exchange": "automation.commands",
        "x-dead-letter-routing-key": "run.requested",
    }, "what earlier versions declared"


def test_each_replicas_own_queue_is_one_metrics_label() -> None:
    assert queue_label("executor.control.vm:6656:50ad75") == "executor.control.<replica>"
    assert queue_label("amq.gen-abc") == "server-named"
    assert queue_label("executor.cancellations") == "executor.cancellations"
