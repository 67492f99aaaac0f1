"""proto-schemas/asyncapi.yaml parses, its references resolve, and it covers every message type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from automation_contracts import CONTENT_TYPE, EVENT_MODELS, schemas_dir

DOCUMENT_PATH = schemas_dir() / "asyncapi.yaml"
EXCHANGES = {
    "automation.events": "topic",
    "automation.commands": "topic",
    "automation.control": "fanout",
    "automation.retry": "direct",
    "automation.dlx": "topic",
}
QUEUES = {"executor.runs", "browser-pool.tasks", "automation.dead"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
    return loaded


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _pointer(document: dict[str, Any], ref: str) -> Any:
    """The node a local ref points to, following refs until a node that is not one."""
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        return _pointer(document, node["$ref"])
    return node


def _amqp(channel: dict[str, Any]) -> dict[str, Any]:
    binding: dict[str, Any] = channel["bindings"]["amqp"]
    return binding


def test_is_asyncapi_3_with_a_credential_free_amqp_server(document: dict[str, Any]) -> None:
    assert document["asyncapi"].startswith("3.0")
    assert document["defaultContentType"] == CONTENT_TYPE
    servers = document["servers"].values()
    assert {server["protocol"] for server in servers} == {"amqp"}
    assert "@" not in str(list(servers)), "no user:password@ in a server"
    assert "security" not in str(list(servers))


def test_file_references_point_to_existing_schema_files(document: dict[str, Any]) -> None:
    files = {ref.split("#")[0] for ref in _refs(document) if not ref.startswith("#")}

    assert files
    for file in files:
        assert (DOCUMENT_PATH.parent / file).is_file(), file


def test_local_references_resolve(document: dict[str, Any]) -> None:
    local = [ref for ref in _refs(document) if ref.startswith("#/")]

    assert local
    for ref in local:
        assert _pointer(document, ref) is not None, ref


def test_every_message_type_is_described_with_its_schema(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"].values()
    by_name = {message["name"]: message for message in messages}

    assert set(EVENT_MODELS) <= set(by_name)
    for event_type in EVENT_MODELS:
        payload_refs = set(_refs(by_name[event_type]["payload"]))
        assert {"./cloudevent.v1.schema.json", f"./{event_type}.v1.schema.json"} <= payload_refs, event_type


def test_exchanges_and_queues_are_all_there(document: dict[str, Any]) -> None:
    channels = document["channels"].values()
    exchanges = {
        _amqp(channel)["exchange"]["name"]: _amqp(channel)["exchange"]["type"]
        for channel in channels
        if _amqp(channel)["is"] == "routingKey"
    }
    queues = {_amqp(channel)["queue"].get("name") for channel in channels if _amqp(channel)["is"] == "queue"}

    assert exchanges == EXCHANGES
    assert queues >= QUEUES
    for channel in channels:
        declared = _amqp(channel).get("exchange") or _amqp(channel)["queue"]
        if not declared.get("exclusive"):
            assert declared["durable"] is True, channel["title"]


def test_messages_carry_trace_headers_and_dead_letters_their_reason(document: dict[str, Any]) -> None:
    components = document["components"]
    trace = components["schemas"]["traceHeaders"]["properties"]
    dead = components["schemas"]["deadLetterHeaders"]

    assert {"traceparent", "tracestate"} <= set(trace)
    assert {"traceparent", "tracestate", "x-dead-letter-reason"} <= set(dead["properties"])
    assert dead["required"] == ["x-dead-letter-reason"]
    for key, message in components["messages"].items():
        traits = [_pointer(document, trait["$ref"]) for trait in message.get("traits", [])]
        headers = [message.get("headers"), *(trait.get("headers") for trait in traits)]
        schemas = [_pointer(document, header["$ref"]) for header in headers if header]
        assert len(schemas) == 1, key
        assert {"traceparent", "tracestate"} <= set(schemas[0]["properties"]), key
        content_types = {message.get("contentType"), *(trait.get("contentType") for trait in traits)} - {None}
        assert content_types == {CONTENT_TYPE}, key


def test_operations_use_their_channels_messages(document: dict[str, Any]) -> None:
    for name, operation in document["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name


def test_every_message_type_is_sent_and_received(document: dict[str, Any]) -> None:
    def names(action: str) -> set[str]:
        return {
            _pointer(document, message["$ref"])["name"]
            for operation in document["operations"].values()
            if operation["action"] == action
            for message in [*operation["messages"], *operation.get("reply", {}).get("messages", [])]
        }

    assert set(EVENT_MODELS) <= names("send")
    assert set(EVENT_MODELS) <= names("receive")
