"""Outside-event requests, replies and refusals on the wire, and completion announcements'
headers: what is refused unread, and how a refusal comes back as the error signal raises."""

from __future__ import annotations

import json

import pytest

from saga.errors import LogError, ProtocolError, SagaError, SagaNotFoundError, StateError
from saga.protocol import MAX_PAYLOAD_BYTES, Direction
from saga.transport.completions import Completion
from saga.transport.signals import (
    CONFLICT,
    INTERNAL,
    INVALID,
    NOT_AWAITED,
    NOT_FOUND,
    TOO_LARGE,
    UNAVAILABLE,
    SignalRefusal,
    SignalReply,
    SignalRequest,
    decode_answer,
    encode_answer,
    max_request_bytes,
)


def test_a_request_round_trips_and_the_payload_defaults_to_an_empty_object() -> None:
    request = SignalRequest(saga_id="order-1", event="approved", id="mail-7", payload={"by": "d"})
    assert SignalRequest.decode(request.encode()) == request
    bare = SignalRequest.decode(b'{"saga_id": "order-1", "event": "approved", "id": "x"}')
    assert bare == SignalRequest(saga_id="order-1", event="approved", id="x", payload={})
    assert json.loads(bare.encode()) == {
        "saga_id": "order-1", "event": "approved", "id": "x", "payload": {},
    }  # fmt: skip


GOOD = {"saga_id": "order-1", "event": "approved", "id": "mail-7"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "must be a JSON object, not list"),
        (json.dumps({**GOOD, "sender": "me"}).encode(), "unknown fields 'sender'"),
        (json.dumps({"event": "approved", "id": "x"}).encode(), "'saga_id' is missing"),
        (json.dumps({**GOOD, "saga_id": "has space"}).encode(), "'saga_id' 'has space' is not"),
        (json.dumps({**GOOD, "saga_id": 7}).encode(), "'saga_id' of type int is not a saga id"),
        (json.dumps({**GOOD, "event": "a.b"}).encode(), "'event' 'a.b' is not an event name"),
        (json.dumps({**GOOD, "id": ""}).encode(), "'id' '' is not an event id"),
        (json.dumps({**GOOD, "id": "a/b"}).encode(), "'id' 'a/b' is not an event id"),
        (
            json.dumps({**GOOD, "payload": None}).encode(),
            "'payload' must be a JSON object, not null",
        ),
        (json.dumps({**GOOD, "payload": [1]}).encode(), "not list"),
        (b'{"saga_id": "o", "event": "e", "id": "i", "payload": {"x": NaN}}', "not valid JSON"),
    ],
)
def test_a_malformed_request_is_refused_naming_what_is_wrong(body: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words) as caught:
        SignalRequest.decode(body)
    assert SignalRefusal.of(caught.value).code == INVALID


def test_an_oversize_request_is_refused_unread_as_too_large() -> None:
    limit = max_request_bytes(MAX_PAYLOAD_BYTES)
    body = json.dumps({**GOOD, "payload": {"x": "a" * limit}}).encode()
    with pytest.raises(ProtocolError, match=f"over the {limit} byte limit") as caught:
        SignalRequest.decode(body)
    assert SignalRefusal.of(caught.value).code == TOO_LARGE
    with pytest.raises(ProtocolError, match="byte limit"):
        SignalRequest(saga_id="o", event="e", id="i", payload={"x": "a" * limit}).encode()


def test_replies_and_refusals_round_trip() -> None:
    reply = SignalReply(saga_id="o", event="e", id="i", recorded=True, step="approval",
                        status="running")  # fmt: skip
    assert decode_answer(encode_answer(reply)) == reply
    kept = SignalReply(saga_id="o", event="e", id="i", recorded=False, step=None, status="running")
    assert decode_answer(encode_answer(kept)) == kept
    refusal = SignalRefusal(code=NOT_FOUND, message="no saga 'o'", details={"saga_id": "o"})
    assert decode_answer(encode_answer(refusal)) == refusal
    with pytest.raises(ProtocolError, match="boolean 'recorded'"):
        decode_answer(b'{"saga_id": "o", "event": "e", "id": "i", "status": "x"}')
    with pytest.raises(ProtocolError, match="'code' and 'message'"):
        decode_answer(b'{"error": {"code": 1}}')


@pytest.mark.parametrize(
    ("error", "code", "raised"),
    [
        (ProtocolError("bad id", saga_id="o"), INVALID, ProtocolError),
        (ProtocolError("payload is 9 bytes, over the 8 byte limit"), TOO_LARGE, ProtocolError),
        (SagaNotFoundError("no saga 'o'", saga_id="o"), NOT_FOUND, SagaNotFoundError),
        (StateError("saga 'o' is completed", saga_id="o"), CONFLICT, StateError),
        (LogError("database down", saga_id="o"), UNAVAILABLE, LogError),
        (SagaError("a bug"), INTERNAL, SagaError),
    ],
)
def test_a_refusal_comes_back_as_the_error_signal_raised(
    error: SagaError, code: str, raised: type[SagaError]
) -> None:
    refusal = SignalRefusal.of(error)
    assert refusal.code == code
    back = decode_answer(encode_answer(refusal))
    assert isinstance(back, SignalRefusal)
    rebuilt = back.error()
    assert type(rebuilt) is raised
    assert rebuilt.saga_id == error.saga_id
    assert error.message in rebuilt.message


def test_an_event_no_step_waits_for_comes_back_as_a_state_error() -> None:
    refusal = SignalRefusal(code=NOT_AWAITED, message="no step waits", details={"saga_id": "o"})
    error = refusal.error()
    assert type(error) is StateError
    assert error.saga_id == "o"


def test_a_completion_announcement_round_trips_through_its_headers() -> None:
    completion = Completion(saga_id="order-1", step="ship", direction=Direction.COMPENSATE)
    headers = completion.headers()
    assert headers["Idempotency-Key"] == "order-1/ship/compensate"
    assert Completion.from_headers(headers) == completion
    del headers["Idempotency-Key"]  # optional
    assert Completion.from_headers(headers) == completion


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        (None, "missing headers: Saga-Id, Saga-Step, Saga-Direction"),
        ({"Saga-Id": "o", "Saga-Step": "s"}, "missing headers: Saga-Direction"),
        ({"Saga-Id": "o o", "Saga-Step": "s", "Saga-Direction": "forward"}, "saga id"),
        ({"Saga-Id": "o", "Saga-Step": "s.t", "Saga-Direction": "forward"}, "not a name"),
        ({"Saga-Id": "o", "Saga-Step": "s", "Saga-Direction": "back"}, "'forward' or"),
        (
            {
                "Saga-Id": "o",
                "Saga-Step": "s",
                "Saga-Direction": "forward",
                "Idempotency-Key": "o/t/forward",
            },
            "does not match",
        ),
    ],
)
def test_a_malformed_announcement_is_refused(headers: dict[str, str] | None, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        Completion.from_headers(headers)
