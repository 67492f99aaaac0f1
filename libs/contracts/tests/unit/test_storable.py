"""Values made storable in PostgreSQL: no NUL in text, no NaN or Infinity in JSON."""

from __future__ import annotations

import math

from automation_contracts.storable import storable_text, storable_value


def test_a_nul_becomes_the_replacement_character_and_clean_text_is_left_as_it_is() -> None:
    assert storable_text("a\x00b\x00") == "a\ufffdb\ufffd"
    clean = "nothing to do"
    assert storable_text(clean) is clean


def test_json_values_are_cleaned_all_the_way_down() -> None:
    value = {"a\x00": ["x\x00", math.nan, {"n": math.inf, "m": -math.inf}], "ok": [1, 1.5, True, None, "s"]}
    assert storable_value(value) == {
        "a\ufffd": ["x\ufffd", None, {"n": None, "m": None}],
        "ok": [1, 1.5, True, None, "s"],
    }
    assert storable_value(("t\x00",)) == ["t\ufffd"]
