"""Routing-key validity and AMQP topic patterns turned into regular expressions."""

from __future__ import annotations

import re

import pytest

from automation_event_gateway.domain.routing import TopicPattern, is_routing_key, routing_key_problem

TYPES = ["a", "a.b", "a.b.c", "x.a.b", "a.x.b", "a.b.b", "job.created", "job-x.created_1"]


@pytest.mark.parametrize(
    "value",
    ["job.created", "inventory.synced", "a", "com.example.order-placed.v2", "x_1.Y-2", "a" * 255],
)
def test_valid_routing_keys(value: str) -> None:
    assert is_routing_key(value)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("", "empty"),
        ("job.*", "'*' or '#'"),
        ("#", "'*' or '#'"),
        ("a..b", "dot-separated"),
        (".a", "dot-separated"),
        ("a.", "dot-separated"),
        ("a b", "dot-separated"),
        ("a/b", "dot-separated"),
        ("é.b", "dot-separated"),
        ("a" * 256, "255 bytes"),
    ],
)
def test_invalid_routing_keys_say_why(value: str, needle: str) -> None:
    problem = routing_key_problem(value)
    assert problem is not None
    assert needle in problem
    assert not is_routing_key(value)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("a.b", {"a.b"}),
        ("a.*", {"a.b"}),
        ("*.b", {"a.b"}),
        ("*", {"a"}),
        ("a.#", {"a", "a.b", "a.b.c", "a.x.b", "a.b.b"}),
        ("#.b", {"a.b", "x.a.b", "a.x.b", "a.b.b"}),
        ("a.#.b", {"a.b", "a.x.b", "a.b.b"}),
        ("#", set(TYPES)),
        ("*.*", {"a.b", "job.created", "job-x.created_1"}),
        ("#.*.b", {"a.b", "x.a.b", "a.x.b", "a.b.b"}),
        ("job.*", {"job.created"}),
        ("job-x.#", {"job-x.created_1"}),
    ],
)
def test_topic_patterns_match_like_amqp_bindings(pattern: str, expected: set[str]) -> None:
    parsed = TopicPattern.parse(pattern)
    assert {t for t in TYPES if parsed.matches(t)} == expected


def test_pattern_regex_is_anchored_and_applies_to_a_leading_dot() -> None:
    parsed = TopicPattern.parse("a.*")
    assert parsed.regex == r"^\.a\.[^.]+$"
    assert re.fullmatch(parsed.regex, ".a.b")
    assert not re.search(parsed.regex, ".a.b.c")


def test_exact_patterns_are_flagged_for_plain_equality() -> None:
    assert TopicPattern.parse("a.b").is_exact
    assert not TopicPattern.parse("a.*").is_exact
    assert not TopicPattern.parse("#").is_exact


@pytest.mark.parametrize("pattern", ["", "a..b", "a.b*", "jo#", "a.(b)", "a b", ".", "a" * 256])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        TopicPattern.parse(pattern)


def test_regex_special_characters_never_reach_the_regex_unescaped() -> None:
    with pytest.raises(ValueError, match="not a word"):
        TopicPattern.parse("a.b|c")
    with pytest.raises(ValueError, match="not a word"):
        TopicPattern.parse("a.[bc]")
