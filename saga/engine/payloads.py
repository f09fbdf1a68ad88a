"""One typed payload per event type, and the one place their stored JSON is encoded and decoded.

The log stores each event's data as a JSON object with a format number (``Event.format``); the
engine, the coordinator and the API read events only through ``payload_of`` and build them only
through ``new_event``. Format 1 is the JSON written since the first release, key for key, so
every stored saga still replays. A later format adds a ``_DECODERS`` entry (and a migration if
the log needs one) while the format-1 decoders stay, so sagas written before it still replay.

Here and not in ``saga.events`` because the payloads carry the protocol's ``Direction`` and the
definition's ``StepKind``, which that lowest layer may not import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from saga.definition import StepKind
from saga.errors import StateError
from saga.events import EVENT_FORMAT, Event, EventType, JsonObject, NewEvent
from saga.protocol import Direction


class Action(StrEnum):
    """What an operator can do to a saga. Stored values never change."""

    RETRY = "retry"
    """Retry the current step or compensation now (a stuck one gets a fresh attempt budget)."""
    CANCEL = "cancel"
    """Compensate a saga that has not passed its pivot."""
    RESOLVE = "resolve"
    """Mark the failing compensation as done by hand, and go on compensating."""
    SKIP = "skip"
    """Mark the failing forward step as done by hand (optionally with a result), and go on."""
    FORCE_FORWARD = "force_forward"
    """At or past the pivot: take the pivot as done, or retry a failing step without limit."""


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_object(value: Any) -> JsonObject | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _object(value: Any) -> JsonObject:
    """A JSON object where format 1 allowed it to be missing or null (read as empty)."""
    return _optional_object(value) or {}


@dataclass(frozen=True, kw_only=True)
class SagaStarted:
    """The first event of every saga."""

    type: ClassVar[EventType] = EventType.SAGA_STARTED
    name: str
    """The definition's name."""
    version: int
    """The definition's version; the saga finishes on it even after a newer one is deployed."""
    input: JsonObject = field(default_factory=dict)
    """The saga's input, as given to ``start``."""
    deadline_at_ms: int | None = None
    """When the saga must have passed its pivot, or compensate; None for no deadline."""

    def encode(self) -> JsonObject:
        return {
            "name": self.name,
            "version": self.version,
            "input": self.input,
            "deadline_at_ms": self.deadline_at_ms,
        }

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> SagaStarted:
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            input=dict(_object(data.get("input"))),
            deadline_at_ms=_optional_int(data.get("deadline_at_ms")),
        )


@dataclass(frozen=True, kw_only=True)
class StepSent:
    """A command is about to be sent: written before it is sent (write-ahead)."""

    type: ClassVar[EventType] = EventType.STEP_SENT
    step: str
    """The step's name."""
    direction: Direction
    """Forward (the step) or compensate (its compensation)."""
    attempt: int
    """1-based attempt number of this step in this direction."""
    kind: StepKind = StepKind.COMPENSATABLE
    """The step's kind (early format-1 events lack it: they were compensatable)."""
    service: str
    """The participant service the command goes to."""
    command: str
    """The command's name at that service."""
    payload: JsonObject
    """The request body."""
    timeout_at_ms: int
    """When the attempt counts as failed if no reply came."""

    def encode(self) -> JsonObject:
        return {
            "step": self.step,
            "direction": self.direction.value,
            "attempt": self.attempt,
            "kind": self.kind.value,
            "service": self.service,
            "command": self.command,
            "payload": self.payload,
            "timeout_at_ms": self.timeout_at_ms,
        }

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> StepSent:
        return cls(
            step=str(data["step"]),
            direction=Direction(data["direction"]),
            attempt=int(data["attempt"]),
            kind=StepKind(data.get("kind", StepKind.COMPENSATABLE)),
            service=str(data["service"]),
            command=str(data["command"]),
            payload=_object(data["payload"]),
            timeout_at_ms=int(data["timeout_at_ms"]),
        )


@dataclass(frozen=True, kw_only=True)
class StepSucceeded:
    """A step or compensation succeeded."""

    type: ClassVar[EventType] = EventType.STEP_SUCCEEDED
    step: str
    """The step's name."""
    direction: Direction
    """Forward or compensate."""
    attempt: int
    """The attempt the reply answered."""
    result: JsonObject = field(default_factory=dict)
    """The participant's result (empty when it gave none)."""

    def encode(self) -> JsonObject:
        return {
            "step": self.step,
            "direction": self.direction.value,
            "attempt": self.attempt,
            "result": self.result,
        }

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> StepSucceeded:
        return cls(
            step=str(data["step"]),
            direction=Direction(data["direction"]),
            attempt=int(data["attempt"]),
            result=_object(data.get("result")),
        )


@dataclass(frozen=True, kw_only=True)
class StepRejected:
    """A business "no": the step had no effect."""

    type: ClassVar[EventType] = EventType.STEP_REJECTED
    step: str
    """The step's name."""
    direction: Direction
    """Forward or compensate."""
    attempt: int
    """The attempt the reply answered."""
    error: JsonObject | None = None
    """The participant's error: ``{code, message, details}``."""

    def encode(self) -> JsonObject:
        return {
            "step": self.step,
            "direction": self.direction.value,
            "attempt": self.attempt,
            "error": self.error,
        }

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> StepRejected:
        return cls(
            step=str(data["step"]),
            direction=Direction(data["direction"]),
            attempt=int(data["attempt"]),
            error=_optional_object(data.get("error")),
        )


@dataclass(frozen=True, kw_only=True)
class StepFailed:
    """An attempt's outcome is unknown: a timeout or a transient error."""

    type: ClassVar[EventType] = EventType.STEP_FAILED
    step: str
    """The step's name."""
    direction: Direction
    """Forward or compensate."""
    attempt: int
    """The attempt that failed."""
    error: JsonObject | None = None
    """What went wrong: ``{code, message, details}`` (code ``timeout`` for a timeout)."""
    final: bool = False
    """The participant said no retry is worth making. Stored only when true."""

    def encode(self) -> JsonObject:
        data: JsonObject = {
            "step": self.step,
            "direction": self.direction.value,
            "attempt": self.attempt,
            "error": self.error,
        }
        if self.final:
            data["final"] = True
        return data

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> StepFailed:
        return cls(
            step=str(data["step"]),
            direction=Direction(data["direction"]),
            attempt=int(data["attempt"]),
            error=_optional_object(data.get("error")),
            final=bool(data.get("final", False)),
        )


@dataclass(frozen=True, kw_only=True)
class RetryScheduled:
    """A failed attempt will be tried again at ``retry_at_ms`` (a durable timer)."""

    type: ClassVar[EventType] = EventType.RETRY_SCHEDULED
    step: str
    """The step's name."""
    direction: Direction
    """Forward or compensate."""
    attempt: int
    """The attempt that will be made (the next one)."""
    retry_at_ms: int
    """When the back-off ends."""

    def encode(self) -> JsonObject:
        return {
            "step": self.step,
            "direction": self.direction.value,
            "attempt": self.attempt,
            "retry_at_ms": self.retry_at_ms,
        }

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> RetryScheduled:
        return cls(
            step=str(data["step"]),
            direction=Direction(data["direction"]),
            attempt=int(data["attempt"]),
            retry_at_ms=int(data["retry_at_ms"]),
        )


@dataclass(frozen=True, kw_only=True)
class CompensationStarted:
    """The saga turns back: ``steps`` will be compensated, in that order."""

    type: ClassVar[EventType] = EventType.COMPENSATION_STARTED
    reason: str | None = None
    """Why it turned back."""
    steps: list[str]
    """The steps to compensate, latest first (a step after every step that depends on it)."""
    awaits: bool = False
    """Steps still in flight (other branches) are awaited, and compensated only once their
    outcome is in (a reply or a timeout). False (a cancel, the deadline, and every format-1
    event): their compensation is sent at once, as the participant fences it. Stored only
    when true."""

    def encode(self) -> JsonObject:
        data: JsonObject = {"reason": self.reason, "steps": self.steps}
        if self.awaits:
            data["awaits"] = True
        return data

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> CompensationStarted:
        reason = data.get("reason")
        return cls(
            reason=None if reason is None else str(reason),
            steps=[str(step) for step in data["steps"]],
            awaits=bool(data.get("awaits", False)),
        )


@dataclass(frozen=True, kw_only=True)
class OperatorAction:
    """An operator's action: an audit entry that also takes effect."""

    type: ClassVar[EventType] = EventType.OPERATOR_ACTION
    action: Action
    """What the operator did."""
    actor: str
    """Who did it."""
    reason: str
    """Why, in the operator's words."""
    step: str | None = None
    """The step the saga was on, if any."""
    direction: Direction | None = None
    """The direction of that step, if any."""
    result: JsonObject | None = None
    """For skip: the result recorded for the skipped step."""

    def encode(self) -> JsonObject:
        data: JsonObject = {"action": self.action.value, "actor": self.actor, "reason": self.reason}
        if self.step is not None:
            data["step"] = self.step
            data["direction"] = None if self.direction is None else self.direction.value
        if self.result is not None:
            data["result"] = self.result
        return data

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> OperatorAction:
        step, direction = data.get("step"), data.get("direction")
        return cls(
            action=Action(data["action"]),
            actor=str(data.get("actor") or ""),
            reason=str(data.get("reason") or ""),
            step=None if step is None else str(step),
            direction=None if direction is None else Direction(direction),
            result=_optional_object(data.get("result")),
        )


@dataclass(frozen=True, kw_only=True)
class SagaStuck:
    """The saga cannot progress without an operator."""

    type: ClassVar[EventType] = EventType.SAGA_STUCK
    code: str
    """Why, for machines: ``pivot_unknown``, ``compensation_failed``, ``unknown_version``..."""
    reason: str
    """Why, for people."""
    step: str | None = None
    """The step it is stuck on, if any; ``direction``, ``attempts`` and ``error`` go with it."""
    direction: Direction | None = None
    """The direction of that step."""
    attempts: int | None = None
    """Attempts made of that step so far."""
    error: JsonObject | None = None
    """That step's last error, if it had one."""

    def encode(self) -> JsonObject:
        data: JsonObject = {"code": self.code, "reason": self.reason}
        if self.step is not None:
            data |= {
                "step": self.step,
                "direction": None if self.direction is None else self.direction.value,
                "attempts": self.attempts,
                "error": self.error,
            }
        return data

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> SagaStuck:
        step, direction = data.get("step"), data.get("direction")
        return cls(
            code=str(data.get("code", "")),
            reason=str(data.get("reason", "")),
            step=None if step is None else str(step),
            direction=None if direction is None else Direction(direction),
            attempts=_optional_int(data.get("attempts")),
            error=_optional_object(data.get("error")),
        )


@dataclass(frozen=True, kw_only=True)
class SagaResumed:
    """Stuck is cleared; the current step gets a fresh attempt budget."""

    type: ClassVar[EventType] = EventType.SAGA_RESUMED
    reason: str
    """Why it was resumed."""

    def encode(self) -> JsonObject:
        return {"reason": self.reason}

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> SagaResumed:
        return cls(reason=str(data.get("reason", "")))


@dataclass(frozen=True, kw_only=True)
class SagaCompleted:
    """Every step succeeded."""

    type: ClassVar[EventType] = EventType.SAGA_COMPLETED
    results: dict[str, JsonObject] = field(default_factory=dict)
    """Each step's result, by step name."""

    def encode(self) -> JsonObject:
        return {"results": self.results}

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> SagaCompleted:
        return cls(results=dict(_object(data.get("results"))))


@dataclass(frozen=True, kw_only=True)
class SagaCompensated:
    """Every done compensatable step was compensated."""

    type: ClassVar[EventType] = EventType.SAGA_COMPENSATED
    compensated: list[str] = field(default_factory=list)
    """The steps compensated, in the order they were compensated."""

    def encode(self) -> JsonObject:
        return {"compensated": self.compensated}

    @classmethod
    def decode_v1(cls, data: Mapping[str, Any]) -> SagaCompensated:
        return cls(compensated=[str(step) for step in data.get("compensated") or []])


@dataclass(frozen=True, kw_only=True)
class StepAccepted:
    """A long-running step's participant accepted the command; it completes it later."""

    type: ClassVar[EventType] = EventType.STEP_ACCEPTED
    step: str
    """The step's name."""
    direction: Direction
    """Forward (only forward commands may be long-running)."""
    attempt: int
    """The attempt that was accepted."""
    token: str
    """The completion token the participant gave."""
    heartbeats: int = 0
    """Heartbeats the participant had sent when this was written."""
    deadline_at_ms: int
    """When the step's outcome counts as unknown if it has not completed."""

    def encode(self) -> JsonObject:
        return {
            "step": self.step,
            "direction": self.direction.value,
            "attempt": self.attempt,
            "token": self.token,
            "heartbeats": self.heartbeats,
            "deadline_at_ms": self.deadline_at_ms,
        }

    @classmethod
    def decode_v2(cls, data: Mapping[str, Any]) -> StepAccepted:
        return cls(
            step=str(data["step"]),
            direction=Direction(data["direction"]),
            attempt=int(data["attempt"]),
            token=str(data["token"]),
            heartbeats=int(data.get("heartbeats", 0)),
            deadline_at_ms=int(data["deadline_at_ms"]),
        )


@dataclass(frozen=True, kw_only=True)
class StepWaiting:
    """A wait step began waiting for an outside event."""

    type: ClassVar[EventType] = EventType.STEP_WAITING
    step: str
    """The wait step's name."""
    event: str
    """The event it waits for."""
    attempt: int = 1
    """1, or more once an operator retried a wait that timed out."""
    timeout_at_ms: int
    """When it gives up waiting."""

    def encode(self) -> JsonObject:
        return {
            "step": self.step,
            "event": self.event,
            "attempt": self.attempt,
            "timeout_at_ms": self.timeout_at_ms,
        }

    @classmethod
    def decode_v2(cls, data: Mapping[str, Any]) -> StepWaiting:
        return cls(
            step=str(data["step"]),
            event=str(data["event"]),
            attempt=int(data.get("attempt", 1)),
            timeout_at_ms=int(data["timeout_at_ms"]),
        )


@dataclass(frozen=True, kw_only=True)
class SignalReceived:
    """An outside event arrived for the saga; a wait step for it takes its payload."""

    type: ClassVar[EventType] = EventType.SIGNAL_RECEIVED
    event: str
    """The event's name (what a ``Wait`` waits for)."""
    id: str
    """The sender's id for it: a repeat of the same id is the same event."""
    payload: JsonObject = field(default_factory=dict)
    """The event's data; the wait step's result."""
    sender: str = ""
    """Who delivered it: an HTTP token's name, or ``nats``."""

    def encode(self) -> JsonObject:
        return {"event": self.event, "id": self.id, "payload": self.payload, "sender": self.sender}

    @classmethod
    def decode_v2(cls, data: Mapping[str, Any]) -> SignalReceived:
        return cls(
            event=str(data["event"]),
            id=str(data["id"]),
            payload=_object(data.get("payload")),
            sender=str(data.get("sender") or ""),
        )


Payload = (
    SagaStarted
    | StepSent
    | StepSucceeded
    | StepRejected
    | StepFailed
    | RetryScheduled
    | CompensationStarted
    | OperatorAction
    | SagaStuck
    | SagaResumed
    | SagaCompleted
    | SagaCompensated
    | StepAccepted
    | StepWaiting
    | SignalReceived
)
"""Any event's typed payload; ``payload.type`` is its ``EventType``."""

PAYLOAD_TYPES: tuple[
    type[
        SagaStarted
        | StepSent
        | StepSucceeded
        | StepRejected
        | StepFailed
        | RetryScheduled
        | CompensationStarted
        | OperatorAction
        | SagaStuck
        | SagaResumed
        | SagaCompleted
        | SagaCompensated
    ],
    ...,
] = (
    SagaStarted,
    StepSent,
    StepSucceeded,
    StepRejected,
    StepFailed,
    RetryScheduled,
    CompensationStarted,
    OperatorAction,
    SagaStuck,
    SagaResumed,
    SagaCompleted,
    SagaCompensated,
)

PAYLOAD_TYPES_V2: tuple[type[StepAccepted | StepWaiting | SignalReceived], ...] = (
    StepAccepted,
    StepWaiting,
    SignalReceived,
)
"""The event types format 2 added (``PAYLOAD_TYPES`` holds those of format 1)."""

_V1: dict[EventType, Callable[[Mapping[str, Any]], Payload]] = {
    cls.type: cls.decode_v1 for cls in PAYLOAD_TYPES
}
_DECODERS: dict[int, dict[EventType, Callable[[Mapping[str, Any]], Payload]]] = {
    1: _V1,
    2: _V1 | {cls.type: cls.decode_v2 for cls in PAYLOAD_TYPES_V2},
}
"""Per stored format, how to read each event type. Keep old formats: old sagas replay."""

assert EVENT_FORMAT in _DECODERS, "the format written must be one that can be read"


def decode(event_type: EventType, data: Mapping[str, Any], event_format: int) -> Payload:
    """The typed payload of stored ``data``; StateError for a format this code cannot read,
    KeyError, TypeError or ValueError for data that does not fit its type (``replay`` turns
    those into a StateError naming the event)."""
    decoders = _DECODERS.get(event_format)
    if decoders is None:
        raise StateError(
            f"event format {event_format} is not known to this version (it reads"
            f" {', '.join(map(str, sorted(_DECODERS)))}); upgrade saga-coordinator"
        )
    decoder = decoders.get(event_type)
    if decoder is None:
        raise ValueError(f"event type {event_type.value!r} does not exist in format {event_format}")
    return decoder(data)


def payload_of(event: Event | NewEvent) -> Payload:
    """An event's typed payload, read according to the format it was stored in."""
    return decode(event.type, event.data, event.format)


def new_event(payload: Payload, at_ms: int) -> NewEvent:
    """The event that records ``payload``, encoded in the current format."""
    return NewEvent(type=payload.type, data=payload.encode(), at_ms=at_ms, format=EVENT_FORMAT)
