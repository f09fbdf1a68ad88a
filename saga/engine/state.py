"""A saga's state, folded from its log: ``replay(events)`` and ``apply(state, event)``. No I/O."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
class Cursor:
    """The step (and direction) the saga is working on, and its attempts so far."""

    step: str
    direction: Direction
    service: str
    command: str
    kind: str
    payload: JsonObject
    attempts: int
    phase: Phase
    budget_base: int = 0
    """Attempts made before the last operator resume; they do not count against the policy."""
    budget_started_ms: int = 0
    unlimited: bool = False
    """An operator forced this step forward: retried without the policy's limits."""
    timeout_at_ms: int | None = None
    retry_at_ms: int | None = None
    last_error: JsonObject | None = None
    final: bool = False
    """The last attempt failed for good (``final`` in its event): no retry is worth making."""

    @property
    def attempts_in_budget(self) -> int:
        return self.attempts - self.budget_base


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
    cursor: Cursor | None = None
    compensating: bool = False
    plan: list[str] = field(default_factory=list)
    """Steps to compensate, in the order they are compensated."""
    compensation_reason: str | None = None
    cancel_reason: str | None = None
    stuck: JsonObject | None = None
    pivot_passed: bool = False

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    def progress(self, step: str) -> StepProgress:
        return self.steps.setdefault(step, StepProgress())

    def results(self) -> dict[str, JsonObject]:
        return {name: p.result for name, p in self.steps.items() if p.result is not None}

    def copy(self) -> SagaState:
        return copy.deepcopy(self)


def _started(event: Event | NewEvent, saga_id: str) -> SagaState:
    data = event.data
    return SagaState(
        saga_id=saga_id,
        name=str(data["name"]),
        version=int(data["version"]),
        input=dict(data.get("input") or {}),
        started_ms=event.at_ms,
        deadline_at_ms=data.get("deadline_at_ms"),
        seq=1,
    )


def replay(events: Iterable[Event]) -> SagaState:
    """Fold a saga's stored events into its state. The first event must be saga_started."""
    state: SagaState | None = None
    for event in events:
        if state is None:
            if event.type is not EventType.SAGA_STARTED:
                raise ValueError(f"saga {event.saga_id}: first event is {event.type}")
            state = _started(event, event.saga_id)
            continue
        if event.seq != state.seq + 1:
            raise ValueError(f"saga {event.saga_id}: gap in log at seq {event.seq}")
        apply(state, event)
    if state is None:
        raise ValueError("no events")
    return state


def new_state(saga_id: str, started: NewEvent) -> SagaState:
    return _started(started, saga_id)


def apply(state: SagaState, event: Event | NewEvent) -> None:
    """Apply one event to ``state`` in place (events are facts: no validation here)."""
    state.seq += 1
    data: dict[str, Any] = event.data
    kind = event.type
    if kind is EventType.STEP_SENT:
        direction = Direction(data["direction"])
        cursor = state.cursor
        same = cursor is not None and (cursor.step, cursor.direction) == (data["step"], direction)
        if cursor is None or not same:
            cursor = Cursor(
                step=data["step"],
                direction=direction,
                service=data["service"],
                command=data["command"],
                kind=data.get("kind", "compensatable"),
                payload=data["payload"],
                attempts=0,
                phase=Phase.IN_FLIGHT,
                budget_started_ms=event.at_ms,
            )
            state.cursor = cursor
        cursor.attempts = int(data["attempt"])
        cursor.phase = Phase.IN_FLIGHT
        cursor.timeout_at_ms = int(data["timeout_at_ms"])
        cursor.retry_at_ms = None
        cursor.final = False
        if direction is Direction.FORWARD:
            progress = state.progress(data["step"])
            progress.sent = True
            progress.payload = data["payload"]
    elif kind in (EventType.STEP_SUCCEEDED, EventType.STEP_REJECTED, EventType.STEP_FAILED):
        cursor = state.cursor
        if cursor is None:
            return
        progress = state.progress(data["step"])
        forward = Direction(data["direction"]) is Direction.FORWARD
        cursor.timeout_at_ms = None
        if kind is EventType.STEP_SUCCEEDED:
            cursor.phase = Phase.SUCCEEDED
            if forward:
                progress.succeeded = True
                progress.result = data.get("result") or {}
                if cursor.kind == "pivot":
                    state.pivot_passed = True
            else:
                progress.compensated = True
        elif kind is EventType.STEP_REJECTED:
            cursor.phase = Phase.REJECTED
            cursor.last_error = data.get("error")
            if forward:
                progress.rejected = True
        else:
            cursor.phase = Phase.FAILED
            cursor.last_error = data.get("error")
            cursor.final = bool(data.get("final", False))
    elif kind is EventType.RETRY_SCHEDULED:
        if state.cursor is not None:
            state.cursor.phase = Phase.WAITING
            state.cursor.retry_at_ms = int(data["retry_at_ms"])
    elif kind is EventType.COMPENSATION_STARTED:
        state.compensating = True
        state.status = SagaStatus.COMPENSATING
        state.plan = list(data["steps"])
        state.compensation_reason = data.get("reason")
        state.cursor = None
    elif kind is EventType.OPERATOR_ACTION:
        _apply_action(state, data, event.at_ms)
    elif kind is EventType.SAGA_STUCK:
        state.status = SagaStatus.STUCK
        state.stuck = dict(data)
    elif kind is EventType.SAGA_RESUMED:
        _resume(state, event.at_ms)
    elif kind is EventType.SAGA_COMPLETED:
        state.status = SagaStatus.COMPLETED
        state.cursor = None
    elif kind is EventType.SAGA_COMPENSATED:
        state.status = SagaStatus.COMPENSATED
        state.cursor = None


def _resume(state: SagaState, at_ms: int) -> None:
    """Clear stuck; a failed current step gets a fresh attempt budget and goes out at once."""
    state.status = SagaStatus.COMPENSATING if state.compensating else SagaStatus.RUNNING
    state.stuck = None
    cursor = state.cursor
    if cursor is not None and cursor.phase in (Phase.FAILED, Phase.REJECTED):
        cursor.budget_base = cursor.attempts
        cursor.budget_started_ms = at_ms
        cursor.phase = Phase.WAITING
        cursor.retry_at_ms = at_ms


def _apply_action(state: SagaState, data: dict[str, Any], at_ms: int) -> None:
    action = data["action"]
    cursor = state.cursor
    if action == "cancel":
        state.cancel_reason = str(data.get("reason") or "cancelled")
    elif action == "retry":
        if state.stuck is not None:
            _resume(state, at_ms)
        elif cursor is not None and cursor.phase is Phase.WAITING:
            cursor.retry_at_ms = at_ms  # retry now, within the same attempt budget
    elif action == "resolve" and cursor is not None:
        state.progress(cursor.step).compensated = True
        cursor.phase = Phase.SUCCEEDED
        state.stuck = None
        state.status = SagaStatus.COMPENSATING
    elif action == "skip" and cursor is not None:
        _done_by_hand(state, cursor, data.get("result") or {"skipped": True})
    elif action == "force_forward" and cursor is not None:
        if cursor.kind == "pivot" and not state.pivot_passed:
            _done_by_hand(state, cursor, {"forced": True})
        else:
            cursor.unlimited = True
            _resume(state, at_ms)


def _done_by_hand(state: SagaState, cursor: Cursor, result: JsonObject) -> None:
    progress = state.progress(cursor.step)
    progress.succeeded = True
    progress.result = dict(result)
    cursor.phase = Phase.SUCCEEDED
    if cursor.kind == "pivot":
        state.pivot_passed = True
    state.stuck = None
    state.status = SagaStatus.RUNNING
