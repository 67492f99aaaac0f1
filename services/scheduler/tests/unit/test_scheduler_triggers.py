"""Event trigger matching: topic patterns as RabbitMQ reads them, where conditions, the platform guard."""

from __future__ import annotations

from typing import Any

import pytest

from automation_contracts import JobSpec
from automation_scheduler.domain.triggers import (
    Condition,
    Trigger,
    bindable,
    first_match,
    is_platform_type,
    json_equal,
    pattern_head,
    topic_matches,
)
from automation_scheduler.service import trigger_rows
from automation_scheduler.triggers import accept_routing_key

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "urn:inventory",
    "type": "inventory.synced",
    "data": {"site": "fra1", "count": 3, "dry_run": False, "items": [{"sku": "a-1"}], "note": None},
}


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("inventory.synced", "inventory.synced", True),
        ("inventory.*", "inventory.synced", True),
        ("inventory.*", "inventory", False),
        ("inventory.*", "inventory.synced.eu", False),
        ("inventory.#", "inventory", True),
        ("inventory.#", "inventory.synced.eu", True),
        ("#", "anything.at.all", True),
        ("#", "x", True),
        ("*.synced", "inventory.synced", True),
        ("*.synced", "synced", False),
        ("#.eu", "inventory.synced.eu", True),
        ("#.eu", "eu", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("orders", "orders.created", False),
    ],
)
def test_topic_patterns_match_as_rabbitmq_does(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


@pytest.mark.parametrize(
    ("event_type", "platform"),
    [
        ("job.created", True),
        ("execution.log", True),
        ("run.requested", True),
        ("browser.task", True),
        ("jobs.created", False),
        ("inventory.synced", False),
        ("executions", False),
    ],
)
def test_platform_types_are_recognised_by_their_first_word(event_type: str, platform: bool) -> None:
    assert is_platform_type(event_type) is platform
    assert accept_routing_key(event_type) is not platform


def test_heads_and_bindability() -> None:
    assert pattern_head("inventory.*") == "inventory"
    assert pattern_head("#") is None
    assert pattern_head("*.synced") is None
    assert bindable("#")
    assert bindable("inventory.*")
    assert not bindable("execution.*")
    assert not bindable("job.created")


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (Condition("data.site", "eq", "fra1"), True),
        (Condition("data.site", "eq", "ams2"), False),
        (Condition("data.site", "ne", "ams2"), True),
        (Condition("data.site", "ne", "fra1"), False),
        (Condition("data.missing", "ne", "x"), True),
        (Condition("data.missing", "eq", None), False),
        (Condition("data.note", "eq", None), True),
        (Condition("data.site", "in", ["ams2", "fra1"]), True),
        (Condition("data.site", "in", ["ams2"]), False),
        (Condition("data.count", "eq", 3.0), True),
        (Condition("data.count", "eq", "3"), False),
        (Condition("data.dry_run", "eq", 0), False),
        (Condition("data.dry_run", "eq", False), True),
        (Condition("data.items.0.sku", "eq", "a-1"), True),
        (Condition("data.items.1.sku", "exists"), False),
        (Condition("data.items", "exists"), True),
        (Condition("data.note", "exists"), True),
        (Condition("data.nothing", "exists", False), True),
        (Condition("data.site", "exists", False), False),
        (Condition("data.site.deeper", "exists"), False),
        (Condition("data.items", "eq", [{"sku": "a-1"}]), True),
        (Condition("data.items", "eq", [{"sku": "a-2"}]), False),
    ],
)
def test_where_conditions(condition: Condition, holds: bool) -> None:
    assert condition.holds(EVENT) is holds


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert json_equal({"a": [1, True]}, {"a": [1.0, True]})
    assert not json_equal({"a": 1}, {"b": 1})


def test_a_trigger_needs_its_pattern_and_every_condition() -> None:
    trigger = Trigger.from_row(0, "inventory.*", [{"path": "data.site", "op": "eq", "value": "fra1"}], None)
    assert trigger.matches("inventory.synced", EVENT)
    assert not trigger.matches("orders.synced", EVENT)
    other_site = EVENT | {"data": {"site": "ams2"}}
    assert not trigger.matches("inventory.synced", other_site)


def test_platform_events_never_match_even_a_catch_all() -> None:
    catch_all = Trigger(0, "#")
    assert catch_all.matches("inventory.synced", EVENT)
    assert not catch_all.matches("execution.log", EVENT)
    assert not catch_all.matches("job.created", EVENT)


def test_the_first_matching_trigger_of_a_job_wins() -> None:
    triggers = [Trigger(2, "#"), Trigger(1, "inventory.synced"), Trigger(0, "orders.*")]
    found = first_match(triggers, "inventory.synced", EVENT)
    assert found is not None
    assert found.position == 1
    assert first_match([Trigger(0, "orders.*")], "inventory.synced", EVENT) is None


def test_trigger_rows_exist_only_for_enabled_jobs() -> None:
    spec: dict[str, Any] = {
        "name": "n",
        "enabled": True,
        "timeout_seconds": 60,
        "retries": 0,
        "retry_backoff": {"base_seconds": 1, "max_seconds": 1},
        "priority": 0,
        "parameters": {},
        "steps": [{"name": "s", "type": "shell", "config": {}}],
        "triggers": [
            {"type": "inventory.*", "where": [{"path": "data.site", "op": "in", "value": ["fra1"]}]},
            {"type": "#", "max_per_minute": 2},
        ],
    }
    rows = trigger_rows(JobSpec.model_validate(spec))
    assert rows == [
        {
            "position": 0,
            "pattern": "inventory.*",
            "head": "inventory",
            "conditions": [{"path": "data.site", "op": "in", "value": ["fra1"]}],
            "max_per_minute": None,
        },
        {"position": 1, "pattern": "#", "head": None, "conditions": [], "max_per_minute": 2},
    ]
    assert trigger_rows(JobSpec.model_validate(spec | {"enabled": False})) == []
    assert trigger_rows(None) == []
