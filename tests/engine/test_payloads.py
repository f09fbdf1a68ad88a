"""Typed event payloads: each type round-trips, byte for byte, the JSON stored before they existed.

``STORED`` is what the hand-written dicts of the engine and coordinator wrote (format 1), key
order included; stored logs hold exactly these, so they must decode and encode unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from saga.definition import StepKind
from saga.engine import payloads, replay
from saga.engine.payloads import (
    PAYLOAD_TYPES,
    PAYLOAD_TYPES_V2,
    Action,
    OperatorAction,
    SagaStarted,
    StepFailed,
    StepSent,
    decode,
    new_event,
    payload_of,
)
from saga.errors import StateError
from saga.events import EVENT_FORMAT, Event, EventType
from saga.protocol import Direction

ERROR = '{"code": "boom", "message": "down", "details": {"n": 1}}'

STORED: list[tuple[EventType, str]] = [
    (
        EventType.SAGA_STARTED,
        '{"name": "order", "version": 2, "input": {"qty": 2}, "deadline_at_ms": null}',
    ),
    (
        EventType.SAGA_STARTED,
        '{"name": "order", "version": 1, "input": {}, "deadline_at_ms": 1700000060000}',
    ),
    (
        EventType.STEP_SENT,
        '{"step": "pay", "direction": "forward", "attempt": 1, "kind": "pivot",'
        ' "service": "payments", "command": "charge", "payload": {"amount": 30},'
        ' "timeout_at_ms": 1700000005000}',
    ),
    (
        EventType.STEP_SUCCEEDED,
        '{"step": "pay", "direction": "compensate", "attempt": 3, "result": {"id": "x"}}',
    ),
    (
        EventType.STEP_REJECTED,
        f'{{"step": "pay", "direction": "forward", "attempt": 1, "error": {ERROR}}}',
    ),
    (
        EventType.STEP_FAILED,
        '{"step": "pay", "direction": "forward", "attempt": 2, "error": {"code": "timeout",'
        ' "message": "no reply within 0:00:05", "details": {}}}',
    ),
    (
        EventType.STEP_FAILED,
        f'{{"step": "pay", "direction": "forward", "attempt": 2, "error": {ERROR}, "final": true}}',
    ),
    (
        EventType.RETRY_SCHEDULED,
        '{"step": "pay", "direction": "forward", "attempt": 3, "retry_at_ms": 1700000009000}',
    ),
    (
        EventType.COMPENSATION_STARTED,
        '{"reason": "step \'pay\' was rejected", "steps": ["stock", "order"]}',
    ),
    (
        EventType.OPERATOR_ACTION,
        '{"action": "cancel", "actor": "ana", "reason": "customer asked"}',
    ),
    (
        EventType.OPERATOR_ACTION,
        '{"action": "resolve", "actor": "ana", "reason": "by hand", "step": "stock",'
        ' "direction": "compensate"}',
    ),
    (
        EventType.OPERATOR_ACTION,
        '{"action": "skip", "actor": "bo", "reason": "done", "step": "ship",'
        ' "direction": "forward", "result": {"skipped": true}}',
    ),
    (
        EventType.SAGA_STUCK,
        '{"code": "unknown_version", "reason": "definition \'order\' version 9 is not registered"}',
    ),
    (
        EventType.SAGA_STUCK,
        '{"code": "compensation_failed", "reason": "compensation of \'stock\' keeps failing",'
        f' "step": "stock", "direction": "compensate", "attempts": 5, "error": {ERROR}}}',
    ),
    (
        EventType.SAGA_STUCK,
        '{"code": "pivot_unknown", "reason": "pivot \'pay\' outcome unknown", "step": "pay",'
        ' "direction": "forward", "attempts": 1, "error": null}',
    ),
    (EventType.SAGA_RESUMED, '{"reason": "definition is registered again"}'),
    (EventType.SAGA_COMPLETED, '{"results": {"pay": {"id": "x"}, "ship": {}}}'),
    (EventType.SAGA_COMPENSATED, '{"compensated": ["stock", "order"]}'),
]

STORED_V2 = [
    (
        EventType.STEP_ACCEPTED,
        '{"step": "ship", "direction": "forward", "attempt": 1, "token": "s1/ship/forward",'
        ' "heartbeats": 2, "deadline_at_ms": 1700003600000}',
    ),
    (
        EventType.STEP_WAITING,
        '{"step": "approval", "event": "approved", "attempt": 1, "timeout_at_ms": 1700086400000}',
    ),
    (
        EventType.SIGNAL_RECEIVED,
        '{"event": "approved", "id": "mail-17", "payload": {"by": "ana"}, "sender": "ops"}',
    ),
]
"""The event types format 2 added, as stored."""


@pytest.mark.parametrize(("event_type", "stored"), STORED)
def test_stored_json_decodes_and_encodes_byte_for_byte(event_type: EventType, stored: str) -> None:
    payload = decode(event_type, json.loads(stored), 1)
    assert payload.type is event_type
    assert json.dumps(payload.encode()) == stored
    event = new_event(payload, 5)
    assert (event.type, event.format, json.dumps(event.data)) == (event_type, 2, stored)
    assert payload_of(event) == payload
    assert decode(event_type, json.loads(stored), 2) == payload  # format 2 reads format 1 keys


@pytest.mark.parametrize(("event_type", "stored"), STORED_V2)
def test_format_2_events_decode_and_encode_byte_for_byte(
    event_type: EventType, stored: str
) -> None:
    payload = decode(event_type, json.loads(stored), 2)
    assert payload.type is event_type
    assert json.dumps(payload.encode()) == stored
    event = new_event(payload, 5)
    assert (event.format, json.dumps(event.data)) == (2, stored)
    with pytest.raises(ValueError, match="does not exist in format 1"):
        decode(event_type, json.loads(stored), 1)


def test_every_event_type_has_one_payload_and_a_stored_example() -> None:
    types = [cls.type for cls in PAYLOAD_TYPES] + [cls.type for cls in PAYLOAD_TYPES_V2]
    assert sorted(types) == sorted(EventType)
    assert {event_type for event_type, _ in STORED + STORED_V2} == set(EventType)


def test_decoded_fields_are_typed() -> None:
    sent = decode(EventType.STEP_SENT, json.loads(STORED[2][1]), 1)
    assert isinstance(sent, StepSent)
    assert (sent.direction, sent.kind, sent.timeout_at_ms) == (
        Direction.FORWARD,
        StepKind.PIVOT,
        1700000005000,
    )
    failed = decode(EventType.STEP_FAILED, json.loads(STORED[6][1]), 1)
    assert isinstance(failed, StepFailed)
    assert failed.final is True
    skip = decode(EventType.OPERATOR_ACTION, json.loads(STORED[11][1]), 1)
    assert isinstance(skip, OperatorAction)
    assert (skip.action, skip.direction, skip.result) == (
        Action.SKIP,
        Direction.FORWARD,
        {"skipped": True},
    )


def test_a_step_sent_from_before_kinds_were_stored_is_compensatable() -> None:
    data = json.loads(STORED[2][1])
    del data["kind"]
    sent = decode(EventType.STEP_SENT, data, 1)
    assert isinstance(sent, StepSent)
    assert sent.kind is StepKind.COMPENSATABLE


def _log(*specs: tuple[EventType, Mapping[str, Any], int]) -> list[Event]:
    return [
        Event(saga_id="s", seq=seq, type=kind, data=dict(data), at_ms=1000 + seq, format=fmt)
        for seq, (kind, data, fmt) in enumerate(specs, start=1)
    ]


STARTED = SagaStarted(name="order", version=1, input={"qty": 2}).encode()
SENT = json.loads(STORED[2][1])


def test_an_unknown_format_is_refused_with_a_clear_error() -> None:
    with pytest.raises(StateError, match="event format 7 is not known"):
        decode(EventType.STEP_SENT, SENT, 7)
    with pytest.raises(StateError, match="event format 7 is not known"):
        replay(_log((EventType.SAGA_STARTED, STARTED, 1), (EventType.STEP_SENT, SENT, 7)))


def test_decoding_dispatches_on_each_events_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later format (here one that renames ``step`` to ``name``) is one more decoder table;
    a saga stored partly in format 1 and partly in it replays."""

    def sent_v2(data: Mapping[str, Any]) -> payloads.Payload:
        return StepSent.decode_v1({**data, "step": data["name"]})

    later = {**payloads._DECODERS[1], EventType.STEP_SENT: sent_v2}
    monkeypatch.setitem(payloads._DECODERS, 3, later)
    renamed = {("name" if key == "step" else key): value for key, value in SENT.items()}
    state = replay(
        _log(
            (EventType.SAGA_STARTED, STARTED, 1),
            (EventType.STEP_SENT, SENT, 1),
            (EventType.RETRY_SCHEDULED, json.loads(STORED[7][1]), 1),
            (EventType.STEP_SENT, {**renamed, "attempt": 2}, 3),
        )
    )
    assert state.pointer is not None
    assert (state.pointer.step, state.pointer.attempts) == ("pay", 2)
    with pytest.raises(StateError, match="cannot be read"):
        replay(_log((EventType.SAGA_STARTED, STARTED, 1), (EventType.STEP_SENT, renamed, 1)))


def test_new_events_are_written_in_the_current_format() -> None:
    assert EVENT_FORMAT == 2
    assert new_event(SagaStarted(name="o", version=1), 0).format == EVENT_FORMAT
