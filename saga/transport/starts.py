"""Saga starts as messages: the ``saga.start`` subject, its request, its reply and its refusals.

Any coordinator answers a start request (NATS: a request to ``saga.start``, served by every
coordinator in the queue group ``saga-coordinators``). The request body is
``{"saga": name, "input": {...}, "saga_id": "...", "version": N}`` (only ``saga`` required);
the answer is ``{"saga_id", "created", "name", "version", "status", "owner"}``, or
``{"error": {"code", "message", ...}}`` with one of the codes below, whose fields let a client
raise the same error classes ``Coordinator.start`` raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from saga.errors import (
    InvalidStartError,
    LogError,
    ProtocolError,
    SagaConflictError,
    SagaError,
    TransportError,
    UnknownSagaError,
)
from saga.names import NAME_RULE, is_name
from saga.protocol import MAX_PAYLOAD_BYTES, JsonObject, decode_json_object, encode_json

START_SUBJECT = "saga.start"
START_QUEUE = "saga-coordinators"
START_ENVELOPE_BYTES = 4096
"""Room in a start request beside its input (the keys, the saga name, id and version): a
request may be this much over the input limit before it is refused unread."""
START_FIELDS = ("saga", "input", "saga_id", "version")

INVALID = "invalid"
"""The request or one of its fields is refused (InvalidStartError): nothing was written."""
UNKNOWN_SAGA = "unknown_saga"
"""No definition of that saga name (and version) is registered (UnknownSagaError)."""
CONFLICT = "conflict"
"""The saga id is used by another saga name, version or input (SagaConflictError)."""
UNAVAILABLE = "unavailable"
"""The coordinator cannot write its log now (LogError); the same start may be repeated."""
INTERNAL = "internal"
"""Anything else: a bug, logged with its traceback by the coordinator that answered."""


def max_request_bytes(max_input_bytes: int = MAX_PAYLOAD_BYTES) -> int:
    """The largest start request read for a coordinator whose input limit is given."""
    return max_input_bytes + START_ENVELOPE_BYTES


@dataclass(frozen=True, kw_only=True)
class StartRequest:
    """A request to start a saga, as a client sends it and a coordinator receives it.

    Decoding checks only the envelope (a JSON object, known fields, a saga name); the other
    fields are kept as received, and ``Coordinator.start`` checks them, the one place a start
    is validated (the HTTP API passes its body's fields the same way).
    """

    saga: str
    """The saga's name."""
    input: Any = None
    """The saga's input: a JSON object (None, or absent from the body, means ``{}``)."""
    saga_id: Any = None
    """The caller's saga id (``saga.names``' grammar), which makes the start idempotent."""
    version: Any = None
    """A registered version of the saga; the latest when None."""

    def to_json(self) -> JsonObject:
        value: JsonObject = {"saga": self.saga, "input": {} if self.input is None else self.input}
        if self.saga_id is not None:
            value["saga_id"] = self.saga_id
        if self.version is not None:
            value["version"] = self.version
        return value

    def encode(self, max_input_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
        """The request body; ProtocolError if the input is not JSON or the body too large."""
        return encode_json(self.to_json(), max_request_bytes(max_input_bytes))

    @classmethod
    def decode(cls, body: bytes, max_input_bytes: int = MAX_PAYLOAD_BYTES) -> StartRequest:
        """Parse a received request; InvalidStartError (a ProtocolError) naming what is wrong."""
        try:
            value = decode_json_object(body, "start request", max_request_bytes(max_input_bytes))
        except ProtocolError as exc:
            raise InvalidStartError(exc.message, argument="request") from exc
        unknown = sorted(key for key in value if key not in START_FIELDS)
        if unknown:
            shown = ", ".join(repr(key[:40]) for key in unknown[:5])
            raise InvalidStartError(
                f"start request has unknown fields {shown}; it takes {', '.join(START_FIELDS)}",
                argument="request",
            )
        name = value.get("saga")
        if not isinstance(name, str) or not is_name(name):
            what = "missing" if name is None else f"not a saga name ({NAME_RULE})"
            raise InvalidStartError(f"start request field 'saga' is {what}", argument="saga")
        if "input" in value and value["input"] is None:
            # JSON's null is a wrong type (as over HTTP); only an absent input means {}.
            raise InvalidStartError("saga input must be a JSON object, not null", argument="input")
        return cls(
            saga=name,
            input=value.get("input"),
            saga_id=value.get("saga_id"),
            version=value.get("version"),
        )


@dataclass(frozen=True, kw_only=True)
class StartReply:
    """A coordinator's answer to a start it accepted: which saga, and whether it is new."""

    saga_id: str
    created: bool
    """False when a saga with this id existed already and nothing new was started."""
    name: str
    version: int
    status: str
    """The saga's status when the answer was written (``SagaStatus`` values)."""
    owner: str | None
    """The id of the coordinator that owned the saga then (the last one, for a finished saga;
    None while no coordinator holds it, e.g. handed back and not claimed yet)."""

    def to_json(self) -> JsonObject:
        return {
            "saga_id": self.saga_id,
            "created": self.created,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "owner": self.owner,
        }

    @classmethod
    def from_json(cls, value: JsonObject) -> StartReply:
        saga_id, created, status = value.get("saga_id"), value.get("created"), value.get("status")
        name, version, owner = value.get("name"), value.get("version"), value.get("owner")
        if not (isinstance(saga_id, str) and isinstance(created, bool)):
            raise ProtocolError("start reply needs a string 'saga_id' and a boolean 'created'")
        if not (isinstance(name, str) and isinstance(status, str)):
            raise ProtocolError("start reply needs string 'name' and 'status'")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ProtocolError("start reply needs an integer 'version'")
        if owner is not None and not isinstance(owner, str):
            raise ProtocolError("start reply 'owner' must be a string or null")
        return cls(
            saga_id=saga_id, created=created, name=name, version=version, status=status, owner=owner
        )


@dataclass(frozen=True, kw_only=True)
class StartRefusal:
    """A coordinator's answer to a start it refused: a code, a message and the error's fields."""

    code: str
    """``invalid``, ``unknown_saga``, ``conflict``, ``unavailable`` or ``internal``."""
    message: str
    details: JsonObject = field(default_factory=dict)
    """The refused error's fields, beside code and message in the wire's ``error`` object:
    ``argument``, ``size_bytes``, ``limit_bytes`` (invalid), ``differences`` (conflict),
    ``saga_id``."""

    def to_json(self) -> JsonObject:
        return {"error": {**self.details, "code": self.code, "message": self.message}}

    @classmethod
    def of(cls, exc: SagaError) -> StartRefusal:
        """The refusal that tells a client about ``exc``."""
        details: JsonObject = {}
        if exc.saga_id is not None:
            details["saga_id"] = exc.saga_id
        if isinstance(exc, InvalidStartError):
            details["argument"] = exc.argument
            if exc.limit_bytes is not None:
                details |= {"size_bytes": exc.size_bytes, "limit_bytes": exc.limit_bytes}
            return cls(code=INVALID, message=exc.message, details=details)
        if isinstance(exc, ProtocolError):
            details["argument"] = "request"
            return cls(code=INVALID, message=exc.message, details=details)
        if isinstance(exc, UnknownSagaError):
            return cls(code=UNKNOWN_SAGA, message=exc.message, details=details)
        if isinstance(exc, SagaConflictError):
            details["differences"] = list(exc.differences)
            return cls(code=CONFLICT, message=exc.message, details=details)
        if isinstance(exc, LogError | TransportError):
            return cls(code=UNAVAILABLE, message=exc.message, details=details)
        return cls(code=INTERNAL, message=exc.message, details=details)

    def error(self) -> SagaError:
        """The error ``Coordinator.start`` would have raised, rebuilt on the client's side."""
        saga_id = self.details.get("saga_id")
        saga_id = saga_id if isinstance(saga_id, str) else None
        if self.code == INVALID:
            argument = self.details.get("argument")
            return InvalidStartError(
                self.message,
                argument=argument if isinstance(argument, str) else "request",
                saga_id=saga_id,
                size_bytes=_int_or_none(self.details.get("size_bytes")),
                limit_bytes=_int_or_none(self.details.get("limit_bytes")),
            )
        if self.code == UNKNOWN_SAGA:
            return UnknownSagaError(self.message, saga_id=saga_id)
        if self.code == CONFLICT and saga_id is not None:
            differences = self.details.get("differences")
            listed = differences if isinstance(differences, list) else []
            return SagaConflictError(
                self.message, saga_id=saga_id, differences=tuple(str(item) for item in listed)
            )
        if self.code == UNAVAILABLE:
            return LogError(self.message, saga_id=saga_id)
        return SagaError(f"the coordinator refused the start ({self.code}): {self.message}")

    @classmethod
    def from_json(cls, value: Any) -> StartRefusal:
        if not isinstance(value, dict):
            raise ProtocolError("start reply 'error' must be a JSON object")
        code, message = value.get("code"), value.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError("start reply error needs string 'code' and 'message'")
        details = {key: item for key, item in value.items() if key not in ("code", "message")}
        return cls(code=code, message=message, details=details)


StartAnswer = StartReply | StartRefusal
"""What a coordinator answers a start request with."""


def decode_answer(body: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> StartAnswer:
    """Parse a coordinator's answer; ProtocolError if it is neither a reply nor a refusal."""
    value = decode_json_object(body, "start reply", max_bytes)
    if "error" in value:
        return StartRefusal.from_json(value["error"])
    return StartReply.from_json(value)


def encode_answer(answer: StartAnswer) -> bytes:
    """The body of a coordinator's answer (small: names, ids and a message)."""
    return encode_json(answer.to_json(), max_request_bytes())


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
