"""The decision logic: given a definition, a saga's state and the time, what happens next.

Pure functions, no I/O: ``decide`` returns the events to append (write-ahead) and the
commands to send once they are stored, and when to wake up next. Inputs from outside (a
reply, a cancel request, an operator's resume) first become events through ``on_reply``,
``on_cancel`` and ``on_resume``; then ``decide`` runs on the new state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from saga.definition import Saga, Step, StepKind
from saga.engine.payloads import (
    CompensationStarted,
    Payload,
    RetryScheduled,
    SagaCompensated,
    SagaCompleted,
    SagaStuck,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    new_event,
)
from saga.engine.state import Phase, SagaState, StepPointer, record
from saga.errors import StateError
from saga.events import JsonObject, NewEvent
from saga.protocol import Command, Direction, Outcome, Reply, encode_json


@dataclass
class Decision:
    """What to do next: append ``events``, then send ``commands``, then sleep to ``wake_at_ms``."""

    events: list[NewEvent] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    wake_at_ms: int | None = None


def _error(code: str, message: str, details: JsonObject | None = None) -> JsonObject:
    return {"code": code, "message": message, "details": details or {}}


def _emit(state: SagaState, decision: Decision, payload: Payload, now: int) -> None:
    decision.events.append(new_event(payload, now))
    record(state, payload, now)


def command_for(state: SagaState, pointer: StepPointer) -> Command:
    return Command(
        saga_id=state.saga_id,
        saga_name=state.name,
        step=pointer.step,
        direction=pointer.direction,
        attempt=pointer.attempts,
        service=pointer.service,
        command=pointer.command,
        payload=pointer.payload,
    )


def in_flight(state: SagaState) -> Command | None:
    """The command awaiting a reply, if any: what recovery re-sends with the same key."""
    pointer = state.pointer
    if state.is_final or state.stuck is not None or pointer is None:
        return None
    return command_for(state, pointer) if pointer.phase is Phase.IN_FLIGHT else None


def _awaits(state: SagaState, command: Command) -> StepPointer | None:
    """The pointer, if it is in flight for exactly this attempt of ``command``."""
    pointer = state.pointer
    if state.is_final or state.stuck is not None or pointer is None:
        return None
    if pointer.phase is not Phase.IN_FLIGHT:
        return None
    if (pointer.step, pointer.direction, pointer.attempts) != (
        command.step,
        command.direction,
        command.attempt,
    ):
        return None
    return pointer


def hold(state: SagaState, command: Command) -> bool:
    """``command`` waits for a slot (flow control): its step's timeout has not started.

    Clears the in-memory pointer's ``timeout_at_ms``; ``decide`` and ``wake_at`` read None
    as "no timeout yet". The log keeps the timeout written with StepSent: a state rebuilt
    after a crash times the attempt out by it if it passed, else re-sends the command (held
    again if it must wait). False, changing nothing, if the saga is no longer waiting for
    this attempt.
    """
    pointer = _awaits(state, command)
    if pointer is None:
        return False
    pointer.timeout_at_ms = None
    return True


def dispatched(state: SagaState, command: Command, now_ms: int, timeout_ms: int) -> bool:
    """A held ``command`` is being sent at ``now_ms``: its timeout starts now.

    False, changing nothing, if the saga is no longer waiting for this attempt (cancelled,
    resolved by an operator, settled): then the command must be dropped, not sent.
    """
    pointer = _awaits(state, command)
    if pointer is None:
        return False
    pointer.timeout_at_ms = now_ms + timeout_ms
    return True


def _send(
    state: SagaState,
    decision: Decision,
    step: Step,
    direction: Direction,
    attempt: int,
    payload: JsonObject,
    now: int,
) -> None:
    command = step.command if direction is Direction.FORWARD else step.compensation
    assert command is not None
    sent = StepSent(
        step=step.name,
        direction=direction,
        attempt=attempt,
        kind=step.kind,
        service=step.service,
        command=command,
        payload=payload,
        timeout_at_ms=now + step.timeout_ms,
    )
    _emit(state, decision, sent, now)
    assert state.pointer is not None
    decision.commands.append(command_for(state, state.pointer))


def _build(builder: Any, state: SagaState) -> JsonObject:
    """Run a user's request builder; the body must be a JSON object (checked by encoding)."""
    body = builder(dict(state.input), state.results())
    if not isinstance(body, dict):
        raise TypeError(f"request builder returned {type(body).__name__}, not a dict")
    encode_json(body)
    return body


def _stick(state: SagaState, decision: Decision, code: str, reason: str, now: int) -> None:
    pointer = state.pointer
    stuck = SagaStuck(code=code, reason=reason)
    if pointer is not None:
        stuck = replace(
            stuck,
            step=pointer.step,
            direction=pointer.direction,
            attempts=pointer.attempts,
            error=pointer.last_error,
        )
    _emit(state, decision, stuck, now)


def compensation_plan(defn: Saga, state: SagaState) -> list[str]:
    """Every compensatable step that was sent and not rejected, latest first."""
    plan = []
    for step in reversed(defn.steps):
        progress = state.steps.get(step.name)
        if step.kind is not StepKind.COMPENSATABLE or progress is None:
            continue
        if progress.sent and not progress.rejected:
            plan.append(step.name)
    return plan


def _start_compensation(
    defn: Saga, state: SagaState, decision: Decision, reason: str, now: int
) -> None:
    plan = compensation_plan(defn, state)
    _emit(state, decision, CompensationStarted(reason=reason, steps=plan), now)


def _step_after_failure(
    defn: Saga, state: SagaState, decision: Decision, step: Step, now: int
) -> None:
    """The pointer's attempt failed (unknown outcome): retry within policy, else give up."""
    pointer = state.pointer
    assert pointer is not None
    forward = pointer.direction is Direction.FORWARD
    policy = step.policy if forward else step.compensation_retry
    retry_at = now + policy.delay_ms(pointer.attempts_in_budget)
    if not pointer.final and (
        pointer.unlimited
        or policy.allows_another(pointer.attempts_in_budget, pointer.budget_started_ms, retry_at)
    ):
        retry = RetryScheduled(
            step=pointer.step,
            direction=pointer.direction,
            attempt=pointer.attempts + 1,
            retry_at_ms=retry_at,
        )
        _emit(state, decision, retry, now)
    elif forward and step.kind is StepKind.COMPENSATABLE:
        why = "failed for good" if pointer.final else "exhausted its retries"
        _start_compensation(defn, state, decision, f"step {step.name!r} {why}", now)
    elif forward and step.kind is StepKind.PIVOT:
        _stick(state, decision, "pivot_unknown", f"pivot {step.name!r} outcome unknown", now)
    elif forward:
        _stick(state, decision, "retries_exhausted", f"step {step.name!r} keeps failing", now)
    else:
        _stick(
            state,
            decision,
            "compensation_failed",
            f"compensation of {step.name!r} keeps failing",
            now,
        )


def _next_forward(defn: Saga, state: SagaState, decision: Decision, now: int) -> None:
    """Send the first step that has not succeeded yet, or complete the saga."""
    for step in defn.steps:
        if state.steps.get(step.name) is None or not state.steps[step.name].succeeded:
            break
    else:
        _emit(state, decision, SagaCompleted(results=state.results()), now)
        return
    try:
        # The input was checked (JSON, size) when the saga started: no need to again.
        payload = dict(state.input) if step.passes_input else _build(step.request, state)
    except Exception as exc:  # user code: any failure is a definition bug, recorded
        reason = f"request builder of {step.name!r} failed: {exc!r}"
        if state.pivot_passed:
            _stick(state, decision, "request_error", reason, now)
        else:
            _start_compensation(defn, state, decision, reason, now)
        return
    _send(state, decision, step, Direction.FORWARD, 1, payload, now)


def _next_compensation(defn: Saga, state: SagaState, decision: Decision, now: int) -> None:
    for name in state.plan:
        if not state.steps[name].compensated:
            break
    else:
        _emit(state, decision, SagaCompensated(compensated=state.plan), now)
        return
    step = defn.steps[defn.index(name)]
    progress = state.steps[name]
    try:
        if step.compensation_request is not None:
            payload = _build(step.compensation_request, state)
        else:
            payload = dict(progress.payload or {})
    except Exception as exc:  # user code
        state.pointer = None
        _stick(state, decision, "request_error", f"compensation request of {name!r}: {exc!r}", now)
        return
    _send(state, decision, step, Direction.COMPENSATE, 1, payload, now)


def _decide_once(defn: Saga, state: SagaState, decision: Decision, now: int) -> bool:
    """Take at most one decision; True if one was taken (an event was emitted)."""
    before = len(decision.events)
    pointer = state.pointer
    if not state.compensating and not state.pivot_passed and not state.pivot_pending:
        if state.cancel_reason is not None:
            _start_compensation(defn, state, decision, f"cancelled: {state.cancel_reason}", now)
            return True
        if state.deadline_at_ms is not None and now >= state.deadline_at_ms:
            _start_compensation(defn, state, decision, "saga deadline passed", now)
            return True
    if pointer is None:
        if state.compensating:
            _next_compensation(defn, state, decision, now)
        else:
            _next_forward(defn, state, decision, now)
        return len(decision.events) > before
    step = defn.steps[defn.index(pointer.step)]
    forward = pointer.direction is Direction.FORWARD
    if pointer.phase is Phase.IN_FLIGHT:
        if pointer.timeout_at_ms is None or now < pointer.timeout_at_ms:
            return False  # None: held, waiting for a slot; its timeout has not started
        timed_out = StepFailed(
            step=pointer.step,
            direction=pointer.direction,
            attempt=pointer.attempts,
            error=_error("timeout", f"no reply within {step.timeout}"),
        )
        _emit(state, decision, timed_out, now)
    elif pointer.phase is Phase.FAILED:
        _step_after_failure(defn, state, decision, step, now)
    elif pointer.phase is Phase.WAITING:
        assert pointer.retry_at_ms is not None
        if now < pointer.retry_at_ms:
            return False
        _send(state, decision, step, pointer.direction, pointer.attempts + 1, pointer.payload, now)
    elif pointer.phase is Phase.REJECTED:
        if not forward:
            _stick(
                state,
                decision,
                "compensation_rejected",
                f"compensation of {step.name!r} was rejected",
                now,
            )
        elif step.kind is StepKind.RETRIABLE:
            _stick(
                state,
                decision,
                "rejected_after_pivot",
                f"step {step.name!r} was rejected after the pivot",
                now,
            )
        else:
            _start_compensation(defn, state, decision, f"step {step.name!r} was rejected", now)
    else:  # succeeded
        state.pointer = None
        if forward:
            _next_forward(defn, state, decision, now)
        else:
            _next_compensation(defn, state, decision, now)
    return len(decision.events) > before


def wake_at(state: SagaState) -> int | None:
    """When ``decide`` next has something to do by time alone (None: only an input can)."""
    if state.is_final or state.stuck is not None:
        return None
    times: list[int] = []
    pointer = state.pointer
    if (
        pointer is not None
        and pointer.phase is Phase.IN_FLIGHT
        and pointer.timeout_at_ms is not None
    ):
        times.append(pointer.timeout_at_ms)
    if pointer is not None and pointer.phase is Phase.WAITING and pointer.retry_at_ms is not None:
        times.append(pointer.retry_at_ms)
    deadline = state.deadline_at_ms
    # While the pivot's outcome is pending the deadline cannot act, so it must not wake us.
    deadline_can_act = not (state.compensating or state.pivot_passed or state.pivot_pending)
    if deadline is not None and deadline_can_act:
        times.append(deadline)
    return min(times) if times else None


def decide(defn: Saga, state: SagaState, now_ms: int) -> Decision:
    """Everything that follows from ``state`` at ``now_ms``; ``state`` is updated in place.

    The same (definition, log, time) always gives the same decision: recovery replays the log
    and calls this again.
    """
    decision = Decision()
    if defn.key != (state.name, state.version):
        raise StateError(f"definition {defn.key} does not match saga {state.name} v{state.version}")
    while not state.is_final and state.stuck is None:
        if not _decide_once(defn, state, decision, now_ms):
            break
    decision.wake_at_ms = wake_at(state)
    return decision


def on_reply(state: SagaState, command: Command, reply: Reply, now_ms: int) -> list[NewEvent]:
    """The event a reply makes, or nothing if it is stale (duplicate, late, other direction).

    A success or rejection for the current step is accepted even from an earlier attempt or
    after a timeout (the idempotency key is the same, so it describes the same effect); a
    failure counts only for the attempt in flight.
    """
    pointer = state.pointer
    if state.is_final or state.stuck is not None or pointer is None:
        return []
    if (pointer.step, pointer.direction) != (command.step, command.direction):
        return []
    replied: StepSucceeded | StepRejected | StepFailed
    if reply.outcome is Outcome.FAILED:
        if pointer.phase is not Phase.IN_FLIGHT or command.attempt != pointer.attempts:
            return []
        assert reply.error is not None
        replied = StepFailed(
            step=command.step,
            direction=command.direction,
            attempt=command.attempt,
            error=reply.error.to_json(),
            final=reply.final,
        )
    else:
        if pointer.phase not in (Phase.IN_FLIGHT, Phase.FAILED, Phase.WAITING):
            return []
        if reply.outcome is Outcome.SUCCEEDED:
            replied = StepSucceeded(
                step=command.step,
                direction=command.direction,
                attempt=command.attempt,
                result=reply.result or {},
            )
        else:
            assert reply.error is not None
            replied = StepRejected(
                step=command.step,
                direction=command.direction,
                attempt=command.attempt,
                error=reply.error.to_json(),
            )
    event = new_event(replied, now_ms)
    record(state, replied, now_ms)
    return [event]
