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
    SignalReceived,
    StepAccepted,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    StepWaiting,
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
    ACCEPTED = "accepted"
    """A long-running step's participant accepted the command; it completes it later, by
    ``timeout_at_ms`` (the completion deadline, extended by heartbeats)."""
    AWAITING = "awaiting"
    """A wait step is waiting for its outside event (``event``) until ``timeout_at_ms``."""


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
    event: str | None = None
    """For a wait step: the outside event it waits for (it sends no command)."""
    token: str | None = None
    """For an accepted long-running step: its completion token."""
    heartbeats: int = 0
    """For an accepted long-running step: heartbeats recorded so far."""
    poll_at_ms: int | None = None
    """For an accepted long-running step: when to re-send the command to ask for its outcome
    (in memory only: recovery re-sends at once, then every ``Step.poll_every``)."""

    @property
    def is_wait(self) -> bool:
        """A wait step's pointer: it waits for an event and never has a command."""
        return self.event is not None

    @property
    def has_command(self) -> bool:
        """A command for this attempt is out (in flight, or accepted and polled)."""
        return not self.is_wait and self.phase in (Phase.IN_FLIGHT, Phase.ACCEPTED)

    @property
    def attempts_in_budget(self) -> int:
        """Attempts that count against the retry policy (those since the last resume)."""
        return self.attempts - self.budget_base

    @property
    def settled(self) -> bool:
        """Nothing is out for it: no command awaiting a reply (unknown outcomes included)."""
        return self.phase not in (Phase.IN_FLIGHT, Phase.AWAITING)

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
    accepted: bool = False
    """A long-running step's participant accepted it (its later reply is a completion)."""


@dataclass
class Signal:
    """An outside event received for the saga; ``step`` is the wait step that took it."""

    event: str
    id: str
    payload: JsonObject
    sender: str
    at_ms: int
    step: str | None = None


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
    pointers: dict[str, StepPointer] = field(default_factory=dict)
    """The steps (or compensations) being worked on, by step name, in the order started:
    several at once where the saga's graph branches. Empty between steps and once finished."""
    compensating: bool = False
    plan: list[str] = field(default_factory=list)
    """Steps to compensate, latest first (a reverse dependency order); steps that do not
    depend on each other are compensated at the same time."""
    compensated_order: list[str] = field(default_factory=list)
    """Steps compensated so far, in the order their compensations succeeded."""
    signals: list[Signal] = field(default_factory=list)
    """Outside events received, in order of arrival."""
    ready_may_change: bool = True
    """A step succeeded since ``decide`` last looked for steps to start (only a success can
    make a step ready): a shortcut for the hot path, not part of the saga's history."""
    awaits_in_flight: bool = False
    """Compensating, and forward steps in flight are awaited before they are compensated
    (``CompensationStarted.awaits``)."""
    compensation_reason: str | None = None
    cancel_reason: str | None = None
    stuck: JsonObject | None = None
    pivot_passed: bool = False

    @property
    def is_final(self) -> bool:
        """Completed or compensated: nothing more will happen to it."""
        return self.status.is_final

    @property
    def pointer(self) -> StepPointer | None:
        """The step to show and act on: the one it is stuck on, else the first failing one,
        else the first one still under way, else the first one; None when there is none."""
        if not self.pointers:
            return None
        stuck_on = None if self.stuck is None else self.stuck.get("step")
        if isinstance(stuck_on, str) and stuck_on in self.pointers:
            return self.pointers[stuck_on]
        for pointer in self.pointers.values():
            if pointer.failing:
                return pointer
        for pointer in self.pointers.values():
            if pointer.phase is not Phase.SUCCEEDED:
                return pointer
        return next(iter(self.pointers.values()))

    @property
    def failing(self) -> bool:
        """Stuck, or a step or compensation is failing (``StepPointer.failing``)."""
        return self.stuck is not None or any(p.failing for p in self.pointers.values())

    @property
    def pivot_pending(self) -> bool:
        """The pivot's outcome is not known yet (``StepPointer.pivot_pending``)."""
        return any(p.pivot_pending for p in self.pointers.values())

    @property
    def at_pivot(self) -> bool:
        """The saga is on its pivot, not yet past it (``StepPointer.at_pivot``)."""
        return any(p.at_pivot for p in self.pointers.values())

    @property
    def needs_attention(self) -> bool:
        """Past its pivot, running (not stuck, not compensating) and a step keeps failing: it
        is retried, never compensated. Health and SagaResult both read this."""
        return (
            self.status is SagaStatus.RUNNING
            and self.pivot_passed
            and any(p.failing for p in self.pointers.values())
        )

    def signal_for(self, event: str) -> Signal | None:
        """The first event named ``event`` that no wait step has taken yet."""
        for signal in self.signals:
            if signal.event == event and signal.step is None:
                return signal
        return None

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
    # A step that succeeded is done with: ``decide`` drops its pointer before anything else,
    # so the replayed state is the one the live coordinator held after its last decision.
    for name in [n for n, p in state.pointers.items() if p.phase is Phase.SUCCEEDED]:
        del state.pointers[name]
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
            pointer = state.pointers.get(payload.step)
            if pointer is not None and pointer.direction is payload.direction:
                pointer.phase = Phase.WAITING
                pointer.retry_at_ms = payload.retry_at_ms
        case CompensationStarted():
            state.compensating = True
            state.status = SagaStatus.COMPENSATING
            state.plan = list(payload.steps)
            state.compensation_reason = payload.reason
            state.awaits_in_flight = payload.awaits
            settle_forward(state)
        case StepAccepted():
            _accepted(state, payload)
        case StepWaiting():
            _waiting(state, payload, at_ms)
        case SignalReceived():
            state.signals.append(
                Signal(
                    event=payload.event,
                    id=payload.id,
                    payload=dict(payload.payload),
                    sender=payload.sender,
                    at_ms=at_ms,
                )
            )
        case OperatorAction():
            _apply_action(state, payload, at_ms)
        case SagaStuck():
            state.status = SagaStatus.STUCK
            state.stuck = payload.encode()
        case SagaResumed():
            _resume(state, at_ms)
        case SagaCompleted():
            state.status = SagaStatus.COMPLETED
            state.pointers.clear()
        case SagaCompensated():
            state.status = SagaStatus.COMPENSATED
            state.pointers.clear()
        case SagaStarted():
            pass  # only ever first, where replay and new_state read it


def settle_forward(state: SagaState) -> None:
    """Once compensating, a forward step with nothing out is done with: its outcome is what
    it is (unknown ones are compensated), so its pointer goes. When the compensation awaits
    what is in flight (a branch failed while others ran), one still awaiting a reply stays
    until the reply or its timeout; otherwise (a cancel, the deadline) it goes too and is
    compensated at once. An accepted one is compensated at once either way: the participant
    SDK fences a completion racing its compensation."""
    for name, pointer in list(state.pointers.items()):
        if pointer.direction is not Direction.FORWARD:
            continue
        # A command held for a slot was never sent: it is not awaited, and never will be
        # (its compensation is fenced at the participant should it have gone out after all).
        awaited = (
            state.awaits_in_flight
            and pointer.phase is Phase.IN_FLIGHT
            and pointer.timeout_at_ms is not None
        )
        if not awaited:
            del state.pointers[name]


def _sent(state: SagaState, sent: StepSent, at_ms: int) -> None:
    pointer = state.pointers.get(sent.step)
    if pointer is None or pointer.direction is not sent.direction:
        state.pointers.pop(sent.step, None)
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
        state.pointers[sent.step] = pointer
    pointer.attempts = sent.attempt
    pointer.phase = Phase.IN_FLIGHT
    pointer.timeout_at_ms = sent.timeout_at_ms
    pointer.retry_at_ms = None
    pointer.final = False
    if sent.direction is Direction.FORWARD:
        progress = state.progress(sent.step)
        progress.sent = True
        progress.payload = sent.payload


def _accepted(state: SagaState, accepted: StepAccepted) -> None:
    pointer = state.pointers.get(accepted.step)
    if pointer is None or pointer.direction is not accepted.direction:
        return
    pointer.phase = Phase.ACCEPTED
    state.progress(accepted.step).accepted = True
    pointer.timeout_at_ms = accepted.deadline_at_ms
    pointer.token = accepted.token
    pointer.heartbeats = accepted.heartbeats
    pointer.retry_at_ms = None
    pointer.poll_at_ms = None


def _waiting(state: SagaState, waiting: StepWaiting, at_ms: int) -> None:
    pointer = state.pointers.get(waiting.step)
    if pointer is None or pointer.direction is not Direction.FORWARD:
        pointer = StepPointer(
            step=waiting.step,
            direction=Direction.FORWARD,
            service="",
            command="",
            kind=StepKind.RETRIABLE if state.pivot_passed else StepKind.COMPENSATABLE,
            payload={},
            attempts=0,
            phase=Phase.AWAITING,
            budget_started_ms=at_ms,
            event=waiting.event,
        )
        state.pointers[waiting.step] = pointer
    pointer.attempts = waiting.attempt
    pointer.phase = Phase.AWAITING
    pointer.timeout_at_ms = waiting.timeout_at_ms
    pointer.retry_at_ms = None
    pointer.final = False
    state.progress(waiting.step).sent = True


def _replied(state: SagaState, reply: StepSucceeded | StepRejected | StepFailed) -> None:
    pointer = state.pointers.get(reply.step)
    if pointer is None or pointer.direction is not reply.direction:
        return
    progress = state.progress(reply.step)
    forward = reply.direction is Direction.FORWARD
    pointer.timeout_at_ms = None
    pointer.poll_at_ms = None
    if isinstance(reply, StepSucceeded):
        pointer.phase = Phase.SUCCEEDED
        if forward:
            progress.succeeded = True
            state.ready_may_change = True
            progress.result = reply.result
            if pointer.kind is StepKind.PIVOT:
                state.pivot_passed = True
            if pointer.event is not None:
                signal = state.signal_for(pointer.event)
                if signal is not None:
                    signal.step = pointer.step
        else:
            progress.compensated = True
            state.compensated_order.append(reply.step)
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
    """Clear stuck; every failed step gets a fresh attempt budget and goes out at once."""
    state.status = SagaStatus.COMPENSATING if state.compensating else SagaStatus.RUNNING
    state.stuck = None
    for pointer in state.pointers.values():
        if pointer.phase in (Phase.FAILED, Phase.REJECTED):
            _fresh_budget(pointer, at_ms)


def _fresh_budget(pointer: StepPointer, at_ms: int) -> None:
    pointer.budget_base = pointer.attempts
    pointer.budget_started_ms = at_ms
    pointer.phase = Phase.WAITING
    pointer.retry_at_ms = at_ms


def _apply_action(state: SagaState, done: OperatorAction, at_ms: int) -> None:
    action = done.action
    pointer = state.pointers.get(done.step) if done.step is not None else state.pointer
    if (
        pointer is not None
        and done.direction is not None
        and pointer.direction is not done.direction
    ):
        pointer = None
    if action is Action.CANCEL:
        state.cancel_reason = done.reason or "cancelled"
    elif action is Action.RETRY:
        if state.stuck is not None:
            _resume(state, at_ms)
        elif pointer is not None and pointer.phase is Phase.WAITING:
            pointer.retry_at_ms = at_ms  # retry now, within the same attempt budget
    elif action is Action.RESOLVE and pointer is not None:
        state.progress(pointer.step).compensated = True
        state.compensated_order.append(pointer.step)
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
            if state.stuck is not None:
                _resume(state, at_ms)
            elif pointer.phase in (Phase.FAILED, Phase.REJECTED):
                _fresh_budget(pointer, at_ms)


def _done_by_hand(state: SagaState, pointer: StepPointer, result: JsonObject) -> None:
    progress = state.progress(pointer.step)
    progress.succeeded = True
    state.ready_may_change = True
    progress.result = dict(result)
    pointer.phase = Phase.SUCCEEDED
    if pointer.kind is StepKind.PIVOT:
        state.pivot_passed = True
    state.stuck = None
    state.status = SagaStatus.RUNNING
