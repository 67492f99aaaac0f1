"""Action lists parse into the contract models, as the consumer and the HTTP API parse them."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime

import pytest

from automation_browser_pool.domain import describe_error, to_json_value
from automation_browser_pool.domain.outcome import MAX_ERROR_LENGTH, RunOutcome
from automation_contracts import (
    BrowserTask,
    ClickAction,
    ContractError,
    EvaluateAction,
    ExtractAction,
    FillAction,
    GotoAction,
    PdfAction,
    PressAction,
    ScreenshotAction,
    SetCookiesAction,
    WaitForAction,
    build_event,
    parse_data,
    schemas_dir,
    validate_event,
)

EXAMPLE = schemas_dir() / "examples" / "browser.task.v1" / "valid-all-actions.json"


def parse(data: dict[str, object]) -> BrowserTask:
    event = build_event("browser.task", source="/tests/browser-pool", data=data)
    validate_event(event)
    return parse_data(event, BrowserTask)


def test_every_action_type_parses_into_its_model() -> None:
    task = parse(json.loads(EXAMPLE.read_text()))
    kinds = [type(a) for a in task.actions]
    assert kinds == [
        SetCookiesAction,
        GotoAction,
        FillAction,
        PressAction,
        WaitForAction,
        ClickAction,
        ExtractAction,
        ExtractAction,
        EvaluateAction,
        ScreenshotAction,
        PdfAction,
    ]
    assert task.timeout_seconds == 45.5
    assert task.viewport is not None
    assert (task.viewport.width, task.viewport.height) == (1280, 800)


def test_defaults_are_filled_in() -> None:
    task = parse(
        {
            "task_id": str(uuid.uuid4()),
            "actions": [
                {"type": "goto", "url": "http://127.0.0.1/"},
                {"type": "screenshot"},
                {"type": "extract", "selector": "h1", "name": "h"},
            ],
        }
    )
    goto, shot, extract = task.actions
    assert isinstance(goto, GotoAction)
    assert goto.wait_until == "load"
    assert isinstance(shot, ScreenshotAction)
    assert (shot.full_page, shot.name) == (False, None)
    assert isinstance(extract, ExtractAction)
    assert extract.attribute is None
    assert task.timeout_seconds == 30
    assert task.execution_id is None
    assert task.viewport is None


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ({"type": "hover", "selector": "a"}, "data.actions.0.type"),
        ({"type": "click"}, "data.actions.0"),
        ({"type": "goto", "url": "relative/path"}, "data.actions.0.url"),
        ({"type": "wait_for", "selector": "a", "state": "stable"}, "data.actions.0.state"),
        ({"type": "fill", "selector": "a", "value": "x", "extra": 1}, "data.actions.0"),
    ],
)
def test_invalid_actions_are_refused_naming_the_field(action: dict[str, object], field: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse({"task_id": str(uuid.uuid4()), "actions": [action]})
    assert str(caught.value).startswith(field) or field in str(caught.value)


def test_cookie_needs_exactly_one_scope() -> None:
    with pytest.raises(ValueError, match="either url, or domain"):
        SetCookiesAction.model_validate(
            {
                "type": "set_cookies",
                "cookies": [{"name": "a", "value": "b", "url": "https://x.test", "domain": "x.test"}],
            }
        )


def test_outputs_become_plain_json() -> None:
    when = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    value = {"n": 1, "f": 1.5, "inf": math.inf, "nan": math.nan, "when": when, "list": (1, "a\x00b"), "none": None}
    assert to_json_value(value) == {
        "n": 1,
        "f": 1.5,
        "inf": None,
        "nan": None,
        "when": "2026-11-23T12:00:00+00:00",
        "list": [1, "a\ufffdb"],
        "none": None,
    }
    assert to_json_value(uuid.UUID("12345678-1234-5678-1234-567812345678")) == "12345678-1234-5678-1234-567812345678"


def test_browser_errors_lose_the_call_log() -> None:
    error = RuntimeError('Page.click: Timeout 500ms exceeded.\nCall log:\n  - waiting for locator("#missing")\n')
    assert describe_error(error) == "Page.click: Timeout 500ms exceeded."
    assert describe_error(RuntimeError("net::ERR_CONNECTION_REFUSED\nat http://127.0.0.1:1/")) == (
        "net::ERR_CONNECTION_REFUSED at http://127.0.0.1:1/"
    )
    assert describe_error(RuntimeError("")) == "RuntimeError"


def test_outcome_errors_are_bounded_and_storable() -> None:
    outcome = RunOutcome.refused("x\x00" * MAX_ERROR_LENGTH)
    assert not outcome.ok
    assert outcome.error is not None
    assert len(outcome.error) == MAX_ERROR_LENGTH
    assert "\x00" not in outcome.error
    assert RunOutcome().ok
