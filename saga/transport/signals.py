"""Outside events as messages: the ``saga.event`` subject, its request, its reply and refusals.

An outside event (a manager's approval, a payment provider's webhook) is delivered to the wait
step of one saga that waits for it by name. Any coordinator answers (NATS: a request to
``saga.event``, served by every coordinator in the queue group ``saga-coordinators``; HTTP:
``POST /api/sagas/{saga}/events/{event}``). The request body is
``{"saga_id": "...", "event": "...", "id": "...", "payload": {...}}`` (``payload`` optional,
``{}`` when absent); the answer is ``{"saga_id", "event", "id", "recorded", "step", "status"}``,
or ``{"error": {"code", "message", ...}}`` with one of the codes below. Events are idempotent
by their ``id``: a repeat answers ``recorded: false`` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from saga.errors import (
    LogError,
    ProtocolError,
    SagaError,
    SagaNotFoundError,
    StateError,
    TransportError,
)
from saga.names import EVENT_ID_RULE, NAME_RULE, SAGA_ID_RULE, is_name, is_saga_id
from saga.protocol import MAX_PAYLOAD_BYTES, JsonObject, decode_json_object, encode_json

EVENT_SUBJECT = "saga.event"
EVENT_QUEUE = "saga-coordinators"
"""The coordinators' queue group (the same as ``saga.start``'s): one of them answers."""
EVENT_ENVELOPE_BYTES = 4096
"""Room in an event request beside its payload (the keys, the saga id, the event's name and
id): a request may be this much over the payload limit before it is refused unread."""
EVENT_FIELDS = ("saga_id", "event", "id", "payload")

INVALID = "invalid"
"""The request or one of its fields is malformed (a ProtocolError): nothing was written."""
TOO_LARGE = "too_large"
"""The payload is over the coordinator's limit (``size_bytes``, ``limit_bytes``)."""
NOT_FOUND = "not_found"
"""No saga with that id (SagaNotFoundError)."""
NOT_AWAITED = "not_awaited"
"""No step of the saga's definition waits for an event of that name (a StateError)."""
CONFLICT = "conflict"
"""The saga is finished, or the step that waits for the event took another one (StateError)."""
UNAVAILABLE = "unavailable"
"""The coordinator cannot write its log now (LogError); the same event may be repeated."""
INTERNAL = "internal"
"""Anything else: a bug, logged with its traceback by the coordinator that answered."""


def max_request_bytes(max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> int:
    """The largest event request read for a coordinator whose payload limit is given."""
    return max_payload_bytes + EVENT_ENVELOPE_BYTES


@dataclass(frozen=True, kw_only=True)
class SignalRequest:
    """An outside event for one saga, as a sender gives it and a coordinator receives it.

    Building it from JSON (``from_json``, ``decode``) checks every field's type and grammar;
    the coordinator checks the rest (the saga, its state, the payload's size).
    """

    saga_id: str
    """The saga the event is for (``saga.names``' saga id grammar)."""
    event: str
    """The event's name, as a ``Wait`` step names it (``saga.names``' name grammar)."""
    id: str
    """The sender's id for this event (the saga id grammar): repeats of an id are one event."""
    payload: JsonObject = field(default_factory=dict)
    """The event's data: the wait step's result, for later steps."""

    def to_json(self) -> JsonObject:
        return {
            "saga_id": self.saga_id,
            "event": self.event,
            "id": self.id,
            "payload": self.payload,
        }

    def encode(self, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
        """The request body; ProtocolError if the payload is not JSON or the body too large."""
        return encode_json(self.to_json(), max_request_bytes(max_payload_bytes))

    @classmethod
    def from_json(cls, value: JsonObject) -> SignalRequest:
        """A request from its JSON fields; ProtocolError naming the field at fault."""
        unknown = sorted(key for key in value if key not in EVENT_FIELDS)
        if unknown:
            shown = ", ".join(repr(key[:40]) for key in unknown[:5])
            raise ProtocolError(
                f"event request has unknown fields {shown}; it takes {', '.join(EVENT_FIELDS)}"
            )
        saga_id = _checked(value, "saga_id", None)
        event = _checked(value, "event", saga_id)
        event_id = _checked(value, "id", saga_id)
        payload = value.get("payload", {})
        if not isinstance(payload, dict):
            kind = "null" if payload is None else type(payload).__name__
            raise ProtocolError(
                f"event request field 'payload' must be a JSON object, not {kind}", saga_id=saga_id
            )
        return cls(saga_id=saga_id, event=event, id=event_id, payload=payload)

    @classmethod
    def decode(cls, body: bytes, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> SignalRequest:
        """Parse a received request; ProtocolError naming what is wrong."""
        value = decode_json_object(body, "event request", max_request_bytes(max_payload_bytes))
        return cls.from_json(value)


_RULES = {
    "saga_id": ("a saga id", SAGA_ID_RULE, is_saga_id),
    "event": ("an event name", NAME_RULE, is_name),
    "id": ("an event id", EVENT_ID_RULE, is_saga_id),
}


def _checked(value: JsonObject, key: str, saga_id: str | None) -> str:
    """``value[key]`` if it follows its grammar; ProtocolError naming the field otherwise."""
    item = value.get(key)
    what, rule, valid = _RULES[key]
    if isinstance(item, str) and valid(item):
        return item
    if item is None:
        raise ProtocolError(f"event request field {key!r} is missing", saga_id=saga_id)
    shown = repr(item[:60]) if isinstance(item, str) else f"of type {type(item).__name__}"
    raise ProtocolError(
        f"event request field {key!r} {shown} is not {what}: it must be {rule}",
        saga_id=saga_id,
    )


@dataclass(frozen=True, kw_only=True)
class SignalReply:
    """A coordinator's answer to an event it took (or had taken before, with the same id)."""

    saga_id: str
    event: str
    id: str
    recorded: bool
    """False for a repeat of an event id the saga had received: nothing changed."""
    step: str | None
    """The wait step the event completed now; None when the saga keeps it for a step it has
    not reached yet (and for a repeat)."""
    status: str
    """The saga's status when the answer was written (``SagaStatus`` values)."""

    def to_json(self) -> JsonObject:
        return {
            "saga_id": self.saga_id,
            "event": self.event,
            "id": self.id,
            "recorded": self.recorded,
            "step": self.step,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, value: JsonObject) -> SignalReply:
        texts = [value.get(key) for key in ("saga_id", "event", "id", "status")]
        recorded, step = value.get("recorded"), value.get("step")
        if not all(isinstance(text, str) for text in texts):
            raise ProtocolError("event reply needs string 'saga_id', 'event', 'id' and 'status'")
        if not isinstance(recorded, bool):
            raise ProtocolError("event reply needs a boolean 'recorded'")
        if step is not None and not isinstance(step, str):
            raise ProtocolError("event reply 'step' must be a string or null")
        saga_id, event, event_id, status = (str(text) for text in texts)
        return cls(
            saga_id=saga_id, event=event, id=event_id, recorded=recorded, step=step, status=status
        )


@dataclass(frozen=True, kw_only=True)
class SignalRefusal:
    """A coordinator's answer to an event it refused: a code, a message and details."""

    code: str
    """``invalid``, ``too_large``, ``not_found``, ``not_awaited``, ``conflict``,
    ``unavailable`` or ``internal``."""
    message: str
    details: JsonObject = field(default_factory=dict)
    """Beside code and message in the wire's ``error`` object: ``saga_id``, and for
    ``too_large`` ``size_bytes`` and ``limit_bytes``."""

    def to_json(self) -> JsonObject:
        return {"error": {**self.details, "code": self.code, "message": self.message}}

    @classmethod
    def of(cls, exc: SagaError) -> SignalRefusal:
        """The refusal that tells a sender about ``exc`` (a StateError is a ``conflict``:
        the caller that knows the event is not awaited at all refuses with ``NOT_AWAITED``)."""
        details: JsonObject = {}
        if exc.saga_id is not None:
            details["saga_id"] = exc.saga_id
        if isinstance(exc, ProtocolError):
            code = TOO_LARGE if "byte limit" in exc.message else INVALID
            return cls(code=code, message=exc.message, details=details)
        if isinstance(exc, SagaNotFoundError):
            return cls(code=NOT_FOUND, message=exc.message, details=details)
        if isinstance(exc, StateError):
            return cls(code=CONFLICT, message=exc.message, details=details)
        if isinstance(exc, LogError | TransportError):
            return cls(code=UNAVAILABLE, message=exc.message, details=details)
        return cls(code=INTERNAL, message=exc.message, details=details)

    def error(self) -> SagaError:
        """The error ``Coordinator.signal`` would have raised, rebuilt on the sender's side."""
        saga_id = self.details.get("saga_id")
        saga_id = saga_id if isinstance(saga_id, str) else None
        if self.code in (INVALID, TOO_LARGE):
            return ProtocolError(self.message, saga_id=saga_id)
        if self.code == NOT_FOUND:
            return SagaNotFoundError(self.message, saga_id=saga_id)
        if self.code in (NOT_AWAITED, CONFLICT):
            return StateError(self.message, saga_id=saga_id)
        if self.code == UNAVAILABLE:
            return LogError(self.message, saga_id=saga_id)
        return SagaError(
            f"the coordinator refused the event ({self.code}): {self.message}", saga_id=saga_id
        )

    @classmethod
    def from_json(cls, value: Any) -> SignalRefusal:
        if not isinstance(value, dict):
            raise ProtocolError("event reply 'error' must be a JSON object")
        code, message = value.get("code"), value.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError("event reply error needs string 'code' and 'message'")
        details = {key: item for key, item in value.items() if key not in ("code", "message")}
        return cls(code=code, message=message, details=details)


SignalAnswer = SignalReply | SignalRefusal
"""What a coordinator answers an event with."""


def decode_answer(body: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> SignalAnswer:
    """Parse a coordinator's answer; ProtocolError if it is neither a reply nor a refusal."""
    value = decode_json_object(body, "event reply", max_bytes)
    if "error" in value:
        return SignalRefusal.from_json(value["error"])
    return SignalReply.from_json(value)


def encode_answer(answer: SignalAnswer) -> bytes:
    """The body of a coordinator's answer (small: names, ids and a message)."""
    return encode_json(answer.to_json(), max_request_bytes())
