"""A saga's state, folded from its log: ``replay(events)`` and ``apply(state, event)``. No I/O."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from saga.definition import StepKind
from saga.engine.payloads import (
    Action,
    CompensationStarted,
    OperatorAction,
    Payload,
    RetryScheduled,
    SagaCompensated,
    SagaCompleted,
    SagaResumed,
    SagaStarted,
    SagaStuck,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    payload_of,
)
from saga.errors import StateError
from saga.events import Event, EventType, JsonObject, NewEvent, SagaStatus
from saga.protocol import Direction


class Phase(StrEnum):
    """Where the current step or compensation stands."""

    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"
    WAITING = "waiting"
    """A retry is scheduled for ``retry_at_ms``."""


@dataclass
class StepPointer:
    """The step (and direction) the saga is working on, and its attempts so far.

    Not to be confused with a page token (``cursor`` in the log's queries): this one points
    into a saga's definition, that one into a list of sagas.
    """

    step: str
    direction: Direction
    service: str
    command: str
    kind: StepKind
    payload: JsonObject
    attempts: int
    phase: Phase
    budget_base: int = 0
    """Attempts made before the last operator resume; they do not count against the policy."""
    budget_started_ms: int = 0
    unlimited: bool = False
    """An operator forced this step forward: retried without the policy's limits."""
    timeout_at_ms: int | None = None
    """When the attempt in flight times out, as logged by its StepSent. None in memory while
    its command waits for a slot (``engine.hold``): the timeout starts when it is sent."""
    retry_at_ms: int | None = None
    last_error: JsonObject | None = None
    final: bool = False
    """The last attempt failed for good (``final`` in its event): no retry is worth making."""

    @property
    def attempts_in_budget(self) -> int:
        """Attempts that count against the retry policy (those since the last resume)."""
        return self.attempts - self.budget_base

    @property
    def failing(self) -> bool:
        """Its last attempt did not succeed, or a retry of it is in flight.

        The one rule behind health (retrying, waiting, needs attention), the operator actions
        that need a failing step (skip, force forward past the pivot) and the API's "failing"
        compensations.
        """
        return self.phase in (Phase.FAILED, Phase.WAITING, Phase.REJECTED) or (
            self.phase is Phase.IN_FLIGHT and self.attempts_in_budget > 1
        )

    @property
    def at_pivot(self) -> bool:
        """This is the pivot's forward run, and it has not succeeded (nor been done by hand)."""
        return (
            self.direction is Direction.FORWARD
            and self.kind is StepKind.PIVOT
            and self.phase is not Phase.SUCCEEDED
        )

    @property
    def pivot_pending(self) -> bool:
        """The pivot was sent and its outcome is not known: it may have committed, so cancel
        and the deadline must wait (a rejected pivot is known to have had no effect)."""
        return self.at_pivot and self.phase is not Phase.REJECTED


@dataclass
class StepProgress:
    """What happened to one step so far."""

    sent: bool = False
    succeeded: bool = False
    rejected: bool = False
    result: JsonObject | None = None
    payload: JsonObject | None = None
    compensated: bool = False


@dataclass
class SagaState:
    """Everything the engine needs to decide what happens next; built only from events."""

    saga_id: str
    name: str
    version: int
    input: JsonObject
    started_ms: int
    deadline_at_ms: int | None
    seq: int = 0
    status: SagaStatus = SagaStatus.RUNNING
    steps: dict[str, StepProgress] = field(default_factory=dict)
    pointer: StepPointer | None = None
    """The step or compensation being worked on; None between steps and once finished."""
    compensating: bool = False
    plan: list[str] = field(default_factory=list)
    """Steps to compensate, in the order they are compensated."""
    compensation_reason: str | None = None
    cancel_reason: str | None = None
    stuck: JsonObject | None = None
    pivot_passed: bool = False

    @property
    def is_final(self) -> bool:
        """Completed or compensated: nothing more will happen to it."""
        return self.status.is_final

    @property
    def failing(self) -> bool:
        """Stuck, or its current step or compensation is failing (``StepPointer.failing``)."""
        return self.stuck is not None or (self.pointer is not None and self.pointer.failing)

    @property
    def pivot_pending(self) -> bool:
        """The pivot's outcome is not known yet (``StepPointer.pivot_pending``)."""
        return self.pointer is not None and self.pointer.pivot_pending

    @property
    def at_pivot(self) -> bool:
        """The saga is on its pivot, not yet past it (``StepPointer.at_pivot``)."""
        return self.pointer is not None and self.pointer.at_pivot

    @property
    def needs_attention(self) -> bool:
        """Past its pivot, running (not stuck, not compensating) and a step keeps failing: it
        is retried, never compensated. Health and SagaResult both read this."""
        return (
            self.status is SagaStatus.RUNNING
            and self.pivot_passed
            and self.pointer is not None
            and self.pointer.failing
        )

    def progress(self, step: str) -> StepProgress:
        return self.steps.setdefault(step, StepProgress())

    def results(self) -> dict[str, JsonObject]:
        return {name: p.result for name, p in self.steps.items() if p.result is not None}

    def copy(self) -> SagaState:
        return copy.deepcopy(self)


def _started(event: Event | NewEvent, saga_id: str) -> SagaState:
    started = payload_of(event)
    if not isinstance(started, SagaStarted):
        raise StateError(f"saga {saga_id}: first event is {event.type}", saga_id=saga_id)
    return SagaState(
        saga_id=saga_id,
        name=started.name,
        version=started.version,
        input=dict(started.input),
        started_ms=event.at_ms,
        deadline_at_ms=started.deadline_at_ms,
        seq=1,
    )


def replay(events: Iterable[Event]) -> SagaState:
    """Fold a saga's stored events into its state. The first event must be saga_started.

    StateError (with the cause chained) when the log cannot be folded: no events, a gap, a
    first event other than saga_started, or an event whose data the engine cannot read.
    """
    state: SagaState | None = None
    for event in events:
        try:
            if state is None:
                if event.type is not EventType.SAGA_STARTED:
                    raise StateError(
                        f"saga {event.saga_id}: first event is {event.type}",
                        saga_id=event.saga_id,
                    )
                state = _started(event, event.saga_id)
                continue
            if event.seq != state.seq + 1:
                raise StateError(
                    f"saga {event.saga_id}: gap in log at seq {event.seq}", saga_id=event.saga_id
                )
            apply(state, event)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(
                f"saga {event.saga_id}: event {event.seq} ({event.type}) cannot be read: {exc!r}",
                saga_id=event.saga_id,
            ) from exc
    if state is None:
        raise StateError("no events to replay")
    return state


def new_state(saga_id: str, started: NewEvent) -> SagaState:
    return _started(started, saga_id)


def apply(state: SagaState, event: Event | NewEvent) -> None:
    """Apply one event to ``state`` in place (events are facts: no validation here)."""
    record(state, payload_of(event), event.at_ms)


def record(state: SagaState, payload: Payload, at_ms: int) -> None:
    """Apply the payload of an event made at ``at_ms`` (``apply`` without decoding it again:
    the engine applies each event it makes this way, from the payload it made it from)."""
    state.seq += 1
    match payload:
        case StepSent():
            _sent(state, payload, at_ms)
        case StepSucceeded() | StepRejected() | StepFailed():
            _replied(state, payload)
        case RetryScheduled():
            if state.pointer is not None:
                state.pointer.phase = Phase.WAITING
                state.pointer.retry_at_ms = payload.retry_at_ms
        case CompensationStarted():
            state.compensating = True
            state.status = SagaStatus.COMPENSATING
            state.plan = list(payload.steps)
            state.compensation_reason = payload.reason
            state.pointer = None
        case OperatorAction():
            _apply_action(state, payload, at_ms)
        case SagaStuck():
            state.status = SagaStatus.STUCK
            state.stuck = payload.encode()
        case SagaResumed():
            _resume(state, at_ms)
        case SagaCompleted():
            state.status = SagaStatus.COMPLETED
            state.pointer = None
        case SagaCompensated():
            state.status = SagaStatus.COMPENSATED
            state.pointer = None
        case SagaStarted():
            pass  # only ever first, where replay and new_state read it


def _sent(state: SagaState, sent: StepSent, at_ms: int) -> None:
    pointer = state.pointer
    if pointer is None or (pointer.step, pointer.direction) != (sent.step, sent.direction):
        pointer = StepPointer(
            step=sent.step,
            direction=sent.direction,
            service=sent.service,
            command=sent.command,
            kind=sent.kind,
            payload=sent.payload,
            attempts=0,
            phase=Phase.IN_FLIGHT,
            budget_started_ms=at_ms,
        )
        state.pointer = pointer
    pointer.attempts = sent.attempt
    pointer.phase = Phase.IN_FLIGHT
    pointer.timeout_at_ms = sent.timeout_at_ms
    pointer.retry_at_ms = None
    pointer.final = False
    if sent.direction is Direction.FORWARD:
        progress = state.progress(sent.step)
        progress.sent = True
        progress.payload = sent.payload


def _replied(state: SagaState, reply: StepSucceeded | StepRejected | StepFailed) -> None:
    pointer = state.pointer
    if pointer is None:
        return
    progress = state.progress(reply.step)
    forward = reply.direction is Direction.FORWARD
    pointer.timeout_at_ms = None
    if isinstance(reply, StepSucceeded):
        pointer.phase = Phase.SUCCEEDED
        if forward:
            progress.succeeded = True
            progress.result = reply.result
            if pointer.kind is StepKind.PIVOT:
                state.pivot_passed = True
        else:
            progress.compensated = True
    elif isinstance(reply, StepRejected):
        pointer.phase = Phase.REJECTED
        pointer.last_error = reply.error
        if forward:
            progress.rejected = True
    else:
        pointer.phase = Phase.FAILED
        pointer.last_error = reply.error
        pointer.final = reply.final


def _resume(state: SagaState, at_ms: int) -> None:
    """Clear stuck; a failed current step gets a fresh attempt budget and goes out at once."""
    state.status = SagaStatus.COMPENSATING if state.compensating else SagaStatus.RUNNING
    state.stuck = None
    pointer = state.pointer
    if pointer is not None and pointer.phase in (Phase.FAILED, Phase.REJECTED):
        pointer.budget_base = pointer.attempts
        pointer.budget_started_ms = at_ms
        pointer.phase = Phase.WAITING
        pointer.retry_at_ms = at_ms


def _apply_action(state: SagaState, done: OperatorAction, at_ms: int) -> None:
    action = done.action
    pointer = state.pointer
    if action is Action.CANCEL:
        state.cancel_reason = done.reason or "cancelled"
    elif action is Action.RETRY:
        if state.stuck is not None:
            _resume(state, at_ms)
        elif pointer is not None and pointer.phase is Phase.WAITING:
            pointer.retry_at_ms = at_ms  # retry now, within the same attempt budget
    elif action is Action.RESOLVE and pointer is not None:
        state.progress(pointer.step).compensated = True
        pointer.phase = Phase.SUCCEEDED
        state.stuck = None
        state.status = SagaStatus.COMPENSATING
    elif action is Action.SKIP and pointer is not None:
        _done_by_hand(state, pointer, done.result or {"skipped": True})
    elif action is Action.FORCE_FORWARD and pointer is not None:
        if pointer.kind is StepKind.PIVOT and not state.pivot_passed:
            _done_by_hand(state, pointer, {"forced": True})
        else:
            pointer.unlimited = True
            _resume(state, at_ms)


def _done_by_hand(state: SagaState, pointer: StepPointer, result: JsonObject) -> None:
    progress = state.progress(pointer.step)
    progress.succeeded = True
    progress.result = dict(result)
    pointer.phase = Phase.SUCCEEDED
    if pointer.kind is StepKind.PIVOT:
        state.pivot_passed = True
    state.stuck = None
    state.status = SagaStatus.RUNNING
