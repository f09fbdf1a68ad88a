"""Fuzzed wire input: decoding returns a value or raises ProtocolError; what it accepts re-encodes.

``Command.decode`` and ``Reply.decode`` see whatever a NATS client sends, so they are driven
with arbitrary bytes, near-JSON, and arbitrary header dicts mixed with the real header names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from saga.errors import ProtocolError
from saga.protocol import (
    HEADER_ATTEMPT,
    HEADER_DIRECTION,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STATUS,
    HEADER_STEP,
    MAX_JSON_DEPTH,
    Command,
    Direction,
    ErrorInfo,
    Outcome,
    Reply,
    encode_json,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNLIMITED = 1 << 40
"""Re-encoding limit: ASCII escapes may make an accepted body longer than it arrived."""

HEADERS = [
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    HEADER_DIRECTION,
    HEADER_ATTEMPT,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_STATUS,
]
NEAR_JSON = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b"NaN",
    b"-Infinity",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": 1e400}',
    b'{"a": -1e999}',
    b'{"a": 1, "a": 2}',
    b'\xef\xbb\xbf{"a": 1}',
    b'{"a": "\\ud800"}',
    b'"\\udfff"',
    b"[" * 50_000,
    b'{"a":' * 50_000,
    b"\xff\xfe{\x00}\x00",
    b'{"outcome": "succeeded", "result": {"x": [1, 2.5, null, true]}}',
    b'{"outcome": "failed", "error": {"code": "c", "message": "m"}}',
    b'{"outcome": "rejected", "error": {"code": 1, "message": "m"}}',
    b'{"outcome": "succeeded", "result": []}',
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, exclude_categories=())),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)


def _dumps(value: Any) -> bytes:
    # allow_nan: the fuzz wants the non-standard NaN/Infinity literals some encoders emit.
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(NEAR_JSON),
    json_values.map(_dumps),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5).map(_dumps),
)
header_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["forward", "compensate", "1", "0", "-1", " 2 ", "1_0", "x", "", "503"]),
    st.integers().map(str),
)
header_dicts = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(HEADERS) | st.text(max_size=10), header_values, max_size=8),
)
names = st.text(min_size=1, max_size=10)


@st.composite
def reply_bodies(draw: st.DrawFn) -> bytes:
    """JSON objects shaped like replies, right or wrong in every field."""
    value: dict[str, Any] = {}
    if draw(st.booleans()):
        value["outcome"] = draw(st.sampled_from([o.value for o in Outcome]) | json_scalars)
    if draw(st.booleans()):
        value["result"] = draw(json_values)
    if draw(st.booleans()):
        error: Any = draw(
            st.fixed_dictionaries(
                {},
                optional={"code": json_scalars, "message": json_scalars, "details": json_values},
            )
            | json_values
        )
        value["error"] = error
    return _dumps(value)


@st.composite
def command_headers(draw: st.DrawFn) -> dict[str, str]:
    """Headers near a valid command's: every field present, some of them wrong."""
    saga_id, step = draw(names), draw(names)
    direction = draw(st.sampled_from(["forward", "compensate"]) | header_values)
    headers = {
        HEADER_SAGA_ID: saga_id,
        HEADER_SAGA_NAME: draw(st.text(max_size=10)),
        HEADER_STEP: step,
        HEADER_DIRECTION: direction,
        HEADER_ATTEMPT: draw(st.integers(min_value=-2, max_value=10**6).map(str) | header_values),
    }
    if draw(st.booleans()):
        headers[HEADER_IDEMPOTENCY_KEY] = draw(
            st.just(f"{saga_id}/{step}/{direction}") | st.text(max_size=20)
        )
    return headers


def decode_command(headers: Mapping[str, str] | None, body: bytes) -> Command | None:
    try:
        return Command.decode(service="svc", command="cmd", headers=headers, body=body)
    except ProtocolError:
        return None


def decode_reply(headers: Mapping[str, str] | None, body: bytes) -> Reply | None:
    try:
        return Reply.decode(headers=headers, body=body)
    except ProtocolError:
        return None


def assert_command_round_trips(decoded: Command) -> None:
    again = Command.decode(
        service=decoded.service,
        command=decoded.command,
        headers=decoded.headers(),
        body=decoded.body(UNLIMITED),
        max_bytes=UNLIMITED,
    )
    assert again == decoded


def assert_reply_round_trips(decoded: Reply) -> None:
    assert Reply.decode(headers=None, body=decoded.encode(UNLIMITED), max_bytes=UNLIMITED) == (
        decoded
    )


@FUZZ
@given(headers=header_dicts, body=bodies)
@example(headers=None, body=b"")
@example(headers={HEADER_SAGA_ID: "s"}, body=b"[" * 100_000)
def test_command_decode_on_arbitrary_headers_and_bytes(
    headers: dict[str, str] | None, body: bytes
) -> None:
    decoded = decode_command(headers, body)
    if decoded is not None:
        assert_command_round_trips(decoded)


@FUZZ
@given(headers=command_headers(), body=bodies)
@example(
    headers={
        HEADER_SAGA_ID: "s",
        HEADER_STEP: "x",
        HEADER_DIRECTION: "forward",
        HEADER_ATTEMPT: "1",
    },
    body=b'{"a": NaN}',
)
@example(
    headers={
        HEADER_SAGA_ID: "s",
        HEADER_STEP: "x",
        HEADER_DIRECTION: "forward",
        HEADER_ATTEMPT: "1",
    },
    body=b'{"a": 1e400}',
)
@example(
    headers={
        HEADER_SAGA_ID: "s",
        HEADER_STEP: "x",
        HEADER_DIRECTION: "forward",
        HEADER_ATTEMPT: "1",
    },
    body=b'{"a":' * 100_000,
)
def test_command_decode_on_near_valid_commands(headers: dict[str, str], body: bytes) -> None:
    decoded = decode_command(headers, body)
    if decoded is not None:
        assert decoded.saga_id == headers[HEADER_SAGA_ID]
        assert decoded.attempt >= 1
        assert_command_round_trips(decoded)


@FUZZ
@given(headers=header_dicts, body=st.one_of(bodies, reply_bodies()))
@example(headers=None, body=b'{"outcome": "succeeded", "result": {"x": NaN}}')
@example(
    headers=None,
    body=b'{"outcome": "failed", "error": {"code": "c", "message": "m",'
    b' "details": {"n": -Infinity}}}',
)
@example(headers={HEADER_STATUS: "503"}, body=b"garbage")
def test_reply_decode_on_arbitrary_headers_and_bytes(
    headers: dict[str, str] | None, body: bytes
) -> None:
    decoded = decode_reply(headers, body)
    if decoded is not None:
        assert decoded.outcome in Outcome
        if decoded.outcome is Outcome.SUCCEEDED:
            assert isinstance(decoded.result, dict)
        else:
            assert isinstance(decoded.error, ErrorInfo)
        assert_reply_round_trips(decoded)


json_objects = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=5), children, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=4,
)


saga_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}", fullmatch=True)
"""Every id the saga id grammar accepts (saga.names)."""
valid_names = st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True)


@FUZZ
@given(
    saga_id=saga_ids,
    saga_name=valid_names | st.just(""),
    step=valid_names,
    direction=st.sampled_from(Direction),
    attempt=st.integers(min_value=1, max_value=10**9),
    payload=json_objects,
)
def test_every_valid_command_survives_the_wire(
    saga_id: str,
    saga_name: str,
    step: str,
    direction: Direction,
    attempt: int,
    payload: dict[str, Any],
) -> None:
    sent = Command(
        saga_id=saga_id,
        saga_name=saga_name,
        step=step,
        direction=direction,
        attempt=attempt,
        service="svc",
        command="cmd",
        payload=payload,
    )
    received = Command.decode(
        service="svc", command="cmd", headers=sent.headers(), body=sent.body()
    )
    assert received == sent


@FUZZ
@given(
    reply=st.one_of(
        json_objects.map(Reply.succeeded),
        st.builds(Reply.rejected, st.text(), st.text(), json_objects),
        st.builds(Reply.failed, st.text(), st.text(), json_objects),
    )
)
def test_every_valid_reply_survives_the_wire(reply: Reply) -> None:
    assert Reply.decode(headers={}, body=reply.encode()) == reply


def test_the_size_limit_is_checked_before_parsing() -> None:
    body = b"[" * 2_000_000  # would exhaust the parser's recursion if it were parsed
    headers = Command(
        saga_id="s", saga_name="n", step="x", direction=Direction.FORWARD, attempt=1,
        service="s", command="c",
    ).headers()  # fmt: skip
    with pytest.raises(ProtocolError, match="byte limit"):
        Command.decode(service="s", command="c", headers=headers, body=body)
    with pytest.raises(ProtocolError, match="byte limit"):
        Reply.decode(headers=None, body=body)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 5_000])
def test_nesting_is_limited_the_same_way_both_ways(depth: int) -> None:
    headers = {HEADER_SAGA_ID: "s", HEADER_STEP: "x", HEADER_DIRECTION: "forward"}
    headers[HEADER_ATTEMPT] = "1"
    body = b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    if depth <= MAX_JSON_DEPTH:
        payload = Command.decode(service="s", command="c", headers=headers, body=body).payload
        assert encode_json(payload) == body
        return
    with pytest.raises(ProtocolError, match="nests deeper"):
        Command.decode(service="s", command="c", headers=headers, body=body)
    with pytest.raises(ProtocolError, match="nests deeper"):
        Reply.decode(headers=None, body=b'{"outcome":"succeeded","result":' + body + b"}")
    with pytest.raises(ProtocolError, match="nests deeper"):
        encode_json(nested(depth))


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-2E999"])
def test_numbers_json_cannot_carry_are_refused(literal: bytes) -> None:
    with pytest.raises(ProtocolError, match="not valid JSON"):
        Reply.decode(headers=None, body=b'{"outcome":"succeeded","result":{"x":' + literal + b"}}")
