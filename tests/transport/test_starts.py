"""Start requests, replies and refusals on the wire: what is refused unread, and how a refusal
comes back to the client as the error Coordinator.start raises."""

from __future__ import annotations

import json

import pytest

from saga.errors import (
    FencedError,
    InvalidStartError,
    LogError,
    ProtocolError,
    SagaConflictError,
    SagaError,
    UnknownSagaError,
)
from saga.protocol import MAX_PAYLOAD_BYTES
from saga.transport.starts import (
    CONFLICT,
    INVALID,
    UNAVAILABLE,
    UNKNOWN_SAGA,
    StartRefusal,
    StartReply,
    StartRequest,
    decode_answer,
    encode_answer,
    max_request_bytes,
)


def test_a_request_round_trips_and_keeps_its_fields_as_given() -> None:
    request = StartRequest(saga="order", input={"n": 1}, saga_id="order-1", version=2)
    assert StartRequest.decode(request.encode()) == request
    bare = StartRequest.decode(b'{"saga": "order"}')
    assert bare == StartRequest(saga="order")
    assert json.loads(StartRequest(saga="order").encode()) == {"saga": "order", "input": {}}
    # The coordinator checks these; decoding passes them on untouched.
    odd = StartRequest.decode(b'{"saga": "order", "input": [1], "saga_id": 7, "version": "x"}')
    assert (odd.input, odd.saga_id, odd.version) == ([1], 7, "x")


@pytest.mark.parametrize(
    ("body", "argument", "words"),
    [
        (b"{not json", "request", "not valid JSON"),
        (b"\xff\xfe", "request", "not valid JSON"),
        (b"[1, 2]", "request", "must be a JSON object, not list"),
        (b'"order"', "request", "must be a JSON object, not str"),
        (b'{"saga": "order", "inputs": {}}', "request", "unknown fields 'inputs'"),
        (b"{}", "saga", "'saga' is missing"),
        (b'{"saga": 5}', "saga", "not a saga name"),
        (b'{"saga": "no spaces"}', "saga", "not a saga name"),
        (b'{"saga": "order", "input": null}', "input", "not null"),
        (b'{"saga": "order", "input": {"x": NaN}}', "request", "not valid JSON"),
        (b'{"saga": "order", "input": ' + b"[" * 200 + b"]" * 200 + b"}", "request", "deeper"),
    ],
)
def test_a_malformed_request_is_refused_naming_what_is_wrong(
    body: bytes, argument: str, words: str
) -> None:
    with pytest.raises(InvalidStartError, match=words) as caught:
        StartRequest.decode(body)
    assert caught.value.argument == argument


def test_an_oversize_request_is_refused_before_it_is_parsed() -> None:
    limit = max_request_bytes(MAX_PAYLOAD_BYTES)
    body = b'{"saga": "order", "input": {"x": "' + b"a" * limit + b'"}}'
    with pytest.raises(InvalidStartError, match=f"over the {limit} byte limit"):
        StartRequest.decode(body)
    # A request just under the envelope's room is read: the coordinator measures the input.
    fits = StartRequest(saga="order", input={"x": "a" * (MAX_PAYLOAD_BYTES - 100)})
    assert StartRequest.decode(fits.encode()) == fits
    with pytest.raises(ProtocolError, match="byte limit"):
        StartRequest(saga="order", input={"x": "a" * limit}).encode()


def test_a_reply_round_trips() -> None:
    reply = StartReply(
        saga_id="order-1", created=True, name="order", version=1, status="running", owner="c-1"
    )
    assert decode_answer(encode_answer(reply)) == reply
    finished = StartReply(
        saga_id="o", created=False, name="order", version=1, status="completed", owner=None
    )
    assert decode_answer(encode_answer(finished)) == finished


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'{"saga_id": "o", "created": "yes", "name": "n", "version": 1, "status": "s"}',
        b'{"saga_id": "o", "created": true, "name": "n", "version": true, "status": "s"}',
        b'{"saga_id": "o", "created": true, "name": "n", "version": 1, "status": "s", "owner": 1}',
        b'{"error": "no"}',
        b'{"error": {"code": 1, "message": "m"}}',
    ],
)
def test_a_garbled_answer_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_answer(body)


def round_trip(exc: SagaError) -> tuple[StartRefusal, SagaError]:
    refusal = decode_answer(encode_answer(StartRefusal.of(exc)))
    assert isinstance(refusal, StartRefusal)
    return refusal, refusal.error()


def test_an_invalid_start_comes_back_with_its_fields() -> None:
    refusal, error = round_trip(
        InvalidStartError(
            "input is 9 bytes, over the 5 byte limit",
            argument="input",
            saga_id="o-1",
            size_bytes=9,
            limit_bytes=5,
        )
    )
    assert refusal.code == INVALID
    assert refusal.to_json()["error"] == {
        "code": "invalid",
        "message": "input is 9 bytes, over the 5 byte limit",
        "argument": "input",
        "saga_id": "o-1",
        "size_bytes": 9,
        "limit_bytes": 5,
    }
    assert isinstance(error, InvalidStartError)
    assert (error.argument, error.saga_id, error.size_bytes, error.limit_bytes) == (
        "input",
        "o-1",
        9,
        5,
    )
    _, bad_json = round_trip(ProtocolError("start request body is not valid JSON"))
    assert isinstance(bad_json, InvalidStartError)
    assert bad_json.argument == "request"


def test_a_conflict_comes_back_with_its_differences() -> None:
    refusal, error = round_trip(
        SagaConflictError("id used", saga_id="o-1", differences=("name", "input"))
    )
    assert refusal.code == CONFLICT
    assert refusal.to_json()["error"]["differences"] == ["name", "input"]
    assert isinstance(error, SagaConflictError)
    assert (error.saga_id, error.differences) == ("o-1", ("name", "input"))
    assert error.message == "id used"


def test_unknown_saga_and_an_unavailable_log_come_back_as_their_classes() -> None:
    refusal, error = round_trip(UnknownSagaError("no saga named 'x' is registered"))
    assert refusal.code == UNKNOWN_SAGA
    assert type(error) is UnknownSagaError
    assert error.message == "no saga named 'x' is registered"
    refusal, error = round_trip(LogError("database is down", saga_id="o-1"))
    assert refusal.code == UNAVAILABLE
    assert type(error) is LogError
    assert error.saga_id == "o-1"
    refusal, _ = round_trip(FencedError("taken over"))
    assert refusal.code == UNAVAILABLE


def test_an_unknown_code_is_a_plain_saga_error_naming_it() -> None:
    refusal = decode_answer(b'{"error": {"code": "teapot", "message": "short and stout"}}')
    assert isinstance(refusal, StartRefusal)
    error = refusal.error()
    assert type(error) is SagaError
    assert "teapot" in error.message
    assert "short and stout" in error.message
