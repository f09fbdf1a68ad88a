"""Wire envelopes between coordinator and participants: commands, replies, headers, encoding.

A command is a NATS request on subject ``<service>.<command>`` whose body is the JSON request
and whose headers say which saga, step, direction and attempt it belongs to, with an
idempotency key derived from (saga id, step, direction) that never changes across retries and
restarts. A reply is a JSON object ``{"outcome": ..., "result": ... | "error": ...}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from saga.errors import ProtocolError
from saga.names import check_saga_id, is_name

JsonObject = dict[str, Any]

MAX_PAYLOAD_BYTES = 512 * 1024
"""Default limit on a command or reply body; NATS' own default max_payload is 1 MiB."""
MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects accepted in a body, so parsing never recurses far."""

HEADER_SAGA_ID = "Saga-Id"
HEADER_SAGA_NAME = "Saga-Name"
HEADER_STEP = "Saga-Step"
HEADER_DIRECTION = "Saga-Direction"
HEADER_ATTEMPT = "Saga-Attempt"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_MAX_REPLY = "Saga-Max-Reply-Bytes"
"""The largest reply the sending coordinator accepts; the participant SDK answers a final
``result_too_large`` rather than send more."""
MIN_MAX_REPLY_BYTES = 1024
"""A ``Saga-Max-Reply-Bytes`` below this is ignored (a final error must still fit)."""
STORE_METADATA_KEY = "saga.idempotency_store"
"""The ``nats.micro`` metadata key where a participant replica announces its store identity."""
HEADER_STATUS = "Status"
"""Set by the NATS server itself, e.g. ``503`` when a request has no responders."""


class Direction(StrEnum):
    """Which way a command moves the saga. Stored values never change."""

    FORWARD = "forward"
    COMPENSATE = "compensate"


class Outcome(StrEnum):
    """The three outcomes of an attempt. Stored values never change."""

    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    """A business "no": the step had no effect."""
    FAILED = "failed"
    """Unknown: a timeout, no responder, a transport or transient handler error. Retried,
    unless the reply is ``final`` (the effect was taken, but the step cannot succeed)."""
    ACCEPTED = "accepted"
    """A long-running step: the participant took the command and will complete it later
    (succeed, reject or fail it) under the completion ``token``. Until then a repeat of the
    command answers ``accepted`` again, with the count of heartbeats sent so far."""


COMPLETIONS_SUBJECT = "saga.completions"
"""Where a participant announces that an accepted command was completed (or heartbeated).
The message carries only the command's headers (saga id, step, direction, idempotency key),
no outcome: every coordinator hears it, and the saga's owner re-sends the command, whose
recorded reply (in the participant's idempotency store, the outbox) is the outcome. A lost
or forged announcement costs one re-send; the owner also re-sends accepted commands on its
own (``Step.poll_every``) and after every recovery or take-over."""


RESULT_TOO_LARGE = "result_too_large"
"""The code of a final failure: the handler succeeded, but its result is over the size limit
(the participant's, the NATS server's, or the one the coordinator announced)."""


def max_reply_bytes(headers: Mapping[str, str] | None) -> int | None:
    """The reply limit a command announces (``Saga-Max-Reply-Bytes``), or None."""
    value = (headers or {}).get(HEADER_MAX_REPLY, "")
    if not value.isdigit() or len(value) > 12:
        return None
    limit = int(value)
    return limit if limit >= MIN_MAX_REPLY_BYTES else None


def idempotency_key(saga_id: str, step: str, direction: Direction) -> str:
    """The key a participant deduplicates on: stable across retries and restarts."""
    return f"{saga_id}/{step}/{direction.value}"


def subject_for(service: str, command: str) -> str:
    return f"{service}.{command}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _nested_deeper_than(value: Any, limit: int) -> bool:
    # Iterative: the point is to never recurse on untrusted depth.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
"""Strict JSON: no NaN or Infinity, no float that overflows (one instance: json.loads with
hooks would build a decoder per call)."""
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""Compact JSON, NaN refused (one instance, as for the decoder)."""


def _check_depth(body: bytes, value: Any, what: str) -> None:
    # Only a body with that many brackets can nest that deep: the walk is rarely needed.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _nested_deeper_than(
        value, MAX_JSON_DEPTH
    ):
        raise ProtocolError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")


def _json_object(body: bytes, what: str, max_bytes: int) -> JsonObject:
    if len(body) > max_bytes:
        raise ProtocolError(f"{what} body is {len(body)} bytes, over the {max_bytes} byte limit")
    try:
        value = _DECODER.decode(body.decode()) if body else {}
    except RecursionError as exc:
        raise ProtocolError(f"{what} body nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # also JSONDecodeError, UnicodeDecodeError
        raise ProtocolError(f"{what} body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} body must be a JSON object, not {type(value).__name__}")
    _check_depth(body, value, f"{what} body")
    return value


def decode_json_object(body: bytes, what: str, max_bytes: int = MAX_PAYLOAD_BYTES) -> JsonObject:
    """``body`` as a JSON object (empty: ``{}``); ProtocolError, naming ``what``, when it is
    over ``max_bytes``, not strict JSON, not an object, or nested too deep."""
    return _json_object(body, what, max_bytes)


def encode_json(value: Mapping[str, Any], max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """Compact JSON bytes; raises ProtocolError when not serialisable, too deep or too large."""
    try:
        body = _ENCODER.encode(value).encode()
    except RecursionError as exc:
        raise ProtocolError(f"payload nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"payload is not JSON-serialisable: {exc}") from exc
    if len(body) > max_bytes:
        raise ProtocolError(f"payload is {len(body)} bytes, over the {max_bytes} byte limit")
    _check_depth(body, value, "payload")
    return body


@dataclass(frozen=True, kw_only=True)
class Command:
    """One attempt at a step or compensation, as sent to a participant."""

    saga_id: str
    saga_name: str
    step: str
    direction: Direction
    attempt: int
    service: str
    command: str
    payload: JsonObject = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.saga_id, self.step, self.direction)

    @property
    def subject(self) -> str:
        return subject_for(self.service, self.command)

    def headers(self) -> dict[str, str]:
        return {
            HEADER_SAGA_ID: self.saga_id,
            HEADER_SAGA_NAME: self.saga_name,
            HEADER_STEP: self.step,
            HEADER_DIRECTION: self.direction.value,
            HEADER_ATTEMPT: str(self.attempt),
            HEADER_IDEMPOTENCY_KEY: self.idempotency_key,
        }

    def body(self, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
        return encode_json(self.payload, max_bytes)

    @classmethod
    def decode(
        cls,
        *,
        service: str,
        command: str,
        headers: Mapping[str, str] | None,
        body: bytes,
        max_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> Command:
        """Parse a received command; raises ProtocolError naming what is wrong."""
        headers = headers or {}
        missing = [
            h
            for h in (HEADER_SAGA_ID, HEADER_STEP, HEADER_DIRECTION, HEADER_ATTEMPT)
            if not headers.get(h)
        ]
        if missing:
            raise ProtocolError(f"command is missing headers: {', '.join(missing)}")
        try:
            direction = Direction(headers[HEADER_DIRECTION])
        except ValueError as exc:
            raise ProtocolError(
                f"header {HEADER_DIRECTION} must be 'forward' or 'compensate',"
                f" not {headers[HEADER_DIRECTION]!r}"
            ) from exc
        try:
            attempt = int(headers[HEADER_ATTEMPT])
        except ValueError as exc:
            raise ProtocolError(f"header {HEADER_ATTEMPT} must be an integer") from exc
        if attempt < 1:
            raise ProtocolError(f"header {HEADER_ATTEMPT} must be >= 1")
        saga_name = headers.get(HEADER_SAGA_NAME, "")
        if saga_name and not is_name(saga_name):
            raise ProtocolError(f"header {HEADER_SAGA_NAME} {saga_name[:60]!r} is not a name")
        if not is_name(headers[HEADER_STEP]):
            raise ProtocolError(f"header {HEADER_STEP} {headers[HEADER_STEP][:60]!r} is not a name")
        decoded = cls(
            saga_id=check_saga_id(headers[HEADER_SAGA_ID]),
            saga_name=saga_name,
            step=headers[HEADER_STEP],
            direction=direction,
            attempt=attempt,
            service=service,
            command=command,
            payload=_json_object(body, "command", max_bytes),
        )
        key = headers.get(HEADER_IDEMPOTENCY_KEY)
        if key is not None and key != decoded.idempotency_key:
            raise ProtocolError(
                f"header {HEADER_IDEMPOTENCY_KEY} {key!r} does not match saga, step and direction"
            )
        return decoded


@dataclass(frozen=True, kw_only=True)
class ErrorInfo:
    """Why an attempt did not succeed."""

    code: str
    message: str
    details: JsonObject = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return {"code": self.code, "message": self.message, "details": self.details}

    @classmethod
    def from_json(cls, value: Any) -> ErrorInfo:
        if not isinstance(value, dict):
            raise ProtocolError("reply error must be a JSON object")
        code, message = value.get("code"), value.get("message")
        details = value.get("details", {})
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError("reply error needs string 'code' and 'message'")
        if not isinstance(details, dict):
            raise ProtocolError("reply error 'details' must be a JSON object")
        return cls(code=code, message=message, details=details)


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A participant's answer to one command."""

    outcome: Outcome
    result: JsonObject | None = None
    error: ErrorInfo | None = None
    final: bool = False
    """For a failure: do not retry. The attempt took effect (or may have) and a repeat would
    answer the same, so the step goes straight to compensation (or stuck, after the pivot)."""
    token: str | None = None
    """For ``accepted``: the completion token (the command's idempotency key)."""
    heartbeats: int = 0
    """For ``accepted``: how many heartbeats the participant has sent for it so far; each new
    one extends the step's completion deadline."""

    @classmethod
    def succeeded(cls, result: JsonObject | None = None) -> Reply:
        return cls(outcome=Outcome.SUCCEEDED, result=result or {})

    @classmethod
    def rejected(cls, code: str, message: str, details: JsonObject | None = None) -> Reply:
        return cls(
            outcome=Outcome.REJECTED,
            error=ErrorInfo(code=code, message=message, details=details or {}),
        )

    @classmethod
    def failed(
        cls, code: str, message: str, details: JsonObject | None = None, *, final: bool = False
    ) -> Reply:
        return cls(
            outcome=Outcome.FAILED,
            error=ErrorInfo(code=code, message=message, details=details or {}),
            final=final,
        )

    @classmethod
    def accepted(cls, token: str, heartbeats: int = 0) -> Reply:
        return cls(outcome=Outcome.ACCEPTED, token=token, heartbeats=heartbeats)

    def to_json(self) -> JsonObject:
        value: JsonObject = {"outcome": self.outcome.value}
        if self.outcome is Outcome.ACCEPTED:
            value["token"] = self.token or ""
            value["heartbeats"] = self.heartbeats
        elif self.outcome is Outcome.SUCCEEDED:
            value["result"] = self.result or {}
        else:
            value["error"] = (self.error or ErrorInfo(code="unknown", message="")).to_json()
            if self.final and self.outcome is Outcome.FAILED:
                value["final"] = True
        return value

    def encode(self, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
        return encode_json(self.to_json(), max_bytes)

    @classmethod
    def from_json(cls, value: JsonObject) -> Reply:
        try:
            outcome = Outcome(str(value.get("outcome")))
        except ValueError as exc:
            raise ProtocolError(f"reply outcome {value.get('outcome')!r} is not known") from exc
        if outcome is Outcome.ACCEPTED:
            token, heartbeats = value.get("token"), value.get("heartbeats", 0)
            if not isinstance(token, str) or not token or len(token) > 1024:
                raise ProtocolError("an accepted reply needs a string 'token'")
            if (
                not isinstance(heartbeats, int)
                or isinstance(heartbeats, bool)
                or not 0 <= heartbeats < 2**53
            ):
                raise ProtocolError("reply 'heartbeats' must be a non-negative integer")
            return cls(outcome=outcome, token=token, heartbeats=heartbeats)
        if outcome is Outcome.SUCCEEDED:
            result = value.get("result", {})
            if not isinstance(result, dict):
                raise ProtocolError("reply result must be a JSON object")
            return cls(outcome=outcome, result=result)
        final = value.get("final", False)
        if not isinstance(final, bool):
            raise ProtocolError("reply 'final' must be true or false")
        error = ErrorInfo.from_json(value.get("error"))
        return cls(outcome=outcome, error=error, final=final and outcome is Outcome.FAILED)

    @classmethod
    def decode(
        cls,
        *,
        headers: Mapping[str, str] | None,
        body: bytes,
        max_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> Reply:
        """Parse a received reply. A NATS ``503`` status (no responders) is a failed outcome."""
        status = (headers or {}).get(HEADER_STATUS)
        if status == "503":
            return cls.failed("no_responders", "no participant is listening on the subject")
        return cls.from_json(_json_object(body, "reply", max_bytes))
