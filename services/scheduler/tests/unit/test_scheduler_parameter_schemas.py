"""Run parameters from a stored job version whose schema cannot be used: a ContractError, never a crash or a fetch."""

from __future__ import annotations

import time
from typing import Any

import pytest

from automation_contracts import ContractError
from automation_scheduler.domain.firing import default_parameters, event_parameters


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"$ref": "#/nowhere"}, "parameters.$ref"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "parameters.$defs.a.$ref"),
        ({"$ref": "http://127.0.0.1:9/remote.json"}, "parameters.$ref"),
    ],
)
def test_an_unusable_schema_is_a_contract_error_naming_it(schema: dict[str, Any], path: str) -> None:
    # a trigger handler records a ContractError for the one job and goes on with the others
    for use in (lambda: default_parameters(schema), lambda: event_parameters(schema, {"site": "x"})):
        with pytest.raises(ContractError) as caught:
            use()
        assert caught.value.path == path


def test_event_data_meets_patterns_in_linear_time() -> None:
    schema = {"type": "object", "properties": {"site": {"type": "string", "pattern": "^(a+)+$"}}}
    started = time.monotonic()
    with pytest.raises(ContractError) as caught:
        event_parameters(schema, {"site": "a" * 28 + "!"})
    assert time.monotonic() - started < 0.5
    assert caught.value.path == "parameters.site"
