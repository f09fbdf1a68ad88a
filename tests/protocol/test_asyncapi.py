"""docs/asyncapi.yaml describes the participant protocol saga/protocol.py implements."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from saga import protocol
from saga.transport import signals, starts

DOC = Path(__file__).parents[2] / "docs" / "asyncapi.yaml"


def _load() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return found


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for key, value in node.items() for r in (
            [value] if key == "$ref" else _refs(value))]  # fmt: skip
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_it_is_asyncapi_3_and_every_reference_resolves() -> None:
    doc = _load()
    assert doc["asyncapi"] == "3.0.0"
    assert {"info", "channels", "operations", "components"} <= set(doc)
    refs = _refs(doc)
    assert len(refs) > 30
    for ref in refs:
        assert _resolve(doc, ref) is not None, ref


def test_every_subject_header_and_outcome_of_the_protocol_is_in_it() -> None:
    text = DOC.read_text(encoding="utf-8")
    constants = {
        name: value
        for name, value in vars(protocol).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    assert {"COMPLETIONS_SUBJECT", "HEADER_SAGA_ID", "RESULT_TOO_LARGE"} <= set(constants)
    for name, value in constants.items():
        assert value in text, name
    for kind in (protocol.Outcome, protocol.Direction):
        for member in kind:
            assert member.value in text, member
    for subject in (starts.START_SUBJECT, signals.EVENT_SUBJECT, starts.START_QUEUE):
        assert subject in text, subject


def test_the_subjects_and_enums_are_where_a_reader_looks() -> None:
    doc = _load()
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert {protocol.COMPLETIONS_SUBJECT, starts.START_SUBJECT, signals.EVENT_SUBJECT} <= addresses
    assert protocol.subject_for("{service}", "{command}") in addresses
    schemas = doc["components"]["schemas"]

    def values(kind: type[StrEnum]) -> list[str]:
        return [member.value for member in kind]

    assert schemas["Outcome"]["enum"] == values(protocol.Outcome)
    assert schemas["Direction"]["enum"] == values(protocol.Direction)
    outcomes = [branch["properties"]["outcome"]["const"] for branch in schemas["Reply"]["oneOf"]]
    assert sorted(outcomes) == sorted(values(protocol.Outcome))
    headers = schemas["CommandHeaders"]
    sent = protocol.Command(
        saga_id="s-1", saga_name="order", step="pay", direction=protocol.Direction.FORWARD,
        attempt=1, service="payments", command="charge",
    ).headers()  # fmt: skip
    assert set(sent) <= set(headers["properties"])
    assert protocol.HEADER_MAX_REPLY in headers["properties"]
    assert set(headers["required"]) <= set(sent)
    refused = schemas["EventRefusal"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(refused) == {
        signals.INVALID, signals.TOO_LARGE, signals.NOT_FOUND, signals.NOT_AWAITED,
        signals.CONFLICT, signals.UNAVAILABLE, signals.INTERNAL,
    }  # fmt: skip
    start_refused = schemas["StartRefusal"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(start_refused) == {
        starts.INVALID, starts.UNKNOWN_SAGA, starts.CONFLICT, starts.UNAVAILABLE, starts.INTERNAL,
    }  # fmt: skip
    assert set(schemas["StartRequest"]["properties"]) == set(starts.START_FIELDS)
    assert set(schemas["EventRequest"]["properties"]) == set(signals.EVENT_FIELDS)
