"""Queue arguments are the ones every service must agree on (a mismatch fails declaration)."""

from automation_messaging.topology import DLX, WORK_QUEUES, work_queue_arguments


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
