"""The decision logic: given a definition, a saga's state and the time, what happens next.

Pure functions, no I/O: ``decide`` returns the events to append (write-ahead) and the
commands to send once they are stored, and when to wake up next. Inputs from outside (a
reply, a cancel request, an operator's resume) first become events through ``on_reply``,
``on_cancel`` and ``on_resume``; then ``decide`` runs on the new state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from saga.definition import AnyStep, Saga, Step, StepKind, Wait
from saga.engine.payloads import (
    CompensationStarted,
    Payload,
    RetryScheduled,
    SagaCompensated,
    SagaCompleted,
    SagaResumed,
    SagaStuck,
    SignalReceived,
    StepAccepted,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    StepWaiting,
    new_event,
)
from saga.engine.state import Phase, SagaState, StepPointer, record, settle_forward
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


def in_flight(state: SagaState) -> list[Command]:
    """The commands awaiting an outcome (in flight, or accepted by a long-running step):
    what recovery re-sends with the same keys."""
    if state.is_final or state.stuck is not None:
        return []
    return [command_for(state, p) for p in state.pointers.values() if p.has_command]


def _awaits(state: SagaState, command: Command) -> StepPointer | None:
    """The pointer, if it awaits exactly this attempt of ``command`` (in flight or accepted)."""
    if state.is_final or state.stuck is not None:
        return None
    pointer = state.pointers.get(command.step)
    if pointer is None or not pointer.has_command:
        return None
    if (pointer.direction, pointer.attempts) != (command.direction, command.attempt):
        return None
    return pointer


def hold(state: SagaState, command: Command) -> bool:
    """``command`` waits for a slot (flow control): its step's timeout has not started.

    Clears the in-memory pointer's ``timeout_at_ms``; ``decide`` and ``wake_at`` read None
    as "no timeout yet". The log keeps the timeout written with StepSent: a state rebuilt
    after a crash times the attempt out by it if it passed, else re-sends the command (held
    again if it must wait). An accepted step's poll keeps its completion deadline. False,
    changing nothing, if the saga is no longer waiting for this attempt.
    """
    pointer = _awaits(state, command)
    if pointer is None:
        return False
    if pointer.phase is Phase.IN_FLIGHT:
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
    if pointer.phase is Phase.IN_FLIGHT:
        pointer.timeout_at_ms = now_ms + timeout_ms
    return True


def _send(
    state: SagaState,
    decision: Decision,
    step: AnyStep,
    direction: Direction,
    attempt: int,
    payload: JsonObject,
    now: int,
) -> None:
    if isinstance(step, Wait):
        waiting = StepWaiting(
            step=step.name, event=step.event, attempt=attempt, timeout_at_ms=now + step.timeout_ms
        )
        _emit(state, decision, waiting, now)
        return
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
    decision.commands.append(command_for(state, state.pointers[step.name]))


def _build(builder: Any, state: SagaState) -> JsonObject:
    """Run a user's request builder; the body must be a JSON object (checked by encoding)."""
    body = builder(dict(state.input), state.results())
    if not isinstance(body, dict):
        raise TypeError(f"request builder returned {type(body).__name__}, not a dict")
    encode_json(body)
    return body


def _stick(
    state: SagaState,
    decision: Decision,
    code: str,
    reason: str,
    now: int,
    pointer: StepPointer | None = None,
) -> None:
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
    """Every compensatable step that was sent and not rejected, latest first: a step comes
    after every step that depends on it (the reverse of the definition's order, which
    ``after`` may only make more parallel, never reorder, since it refuses cycles)."""
    plan = []
    for step in reversed(_topological(defn)):
        progress = state.steps.get(step.name)
        if not isinstance(step, Step) or step.kind is not StepKind.COMPENSATABLE:
            continue
        if progress is not None and progress.sent and not progress.rejected:
            plan.append(step.name)
    return plan


def _topological(defn: Saga) -> list[AnyStep]:
    """The steps in an order where each comes after all it depends on; ties in declaration
    order, so a plain sequence keeps its order."""
    placed: set[str] = set()
    order: list[AnyStep] = []
    remaining = list(defn.steps)
    while remaining:
        for i, step in enumerate(remaining):
            if all(name in placed for name in defn.after(step.name)):
                order.append(step)
                placed.add(step.name)
                del remaining[i]
                break
    return order


def _start_compensation(
    defn: Saga, state: SagaState, decision: Decision, reason: str, now: int, *, awaits: bool = True
) -> None:
    plan = compensation_plan(defn, state)
    started = CompensationStarted(reason=reason, steps=plan, awaits=awaits)
    _emit(state, decision, started, now)


def _step_after_failure(
    defn: Saga, state: SagaState, decision: Decision, pointer: StepPointer, now: int
) -> None:
    """The pointer's attempt failed (unknown outcome): retry within policy, else give up."""
    step = defn.step(pointer.step)
    forward = pointer.direction is Direction.FORWARD
    if isinstance(step, Wait):
        why = f"event {step.event!r} did not arrive within {step.timeout}"
        if state.pivot_passed:
            _stick(state, decision, "event_timeout", f"wait {step.name!r}: {why}", now, pointer)
        else:
            _start_compensation(defn, state, decision, f"wait {step.name!r}: {why}", now)
        return
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
        _stick(
            state, decision, "pivot_unknown", f"pivot {step.name!r} outcome unknown", now, pointer
        )
    elif forward:
        _stick(
            state, decision, "retries_exhausted", f"step {step.name!r} keeps failing", now, pointer
        )
    else:
        _stick(
            state,
            decision,
            "compensation_failed",
            f"compensation of {step.name!r} keeps failing",
            now,
            pointer,
        )


def _succeeded(state: SagaState, name: str) -> bool:
    progress = state.steps.get(name)
    return progress is not None and progress.succeeded


def _next_forward(defn: Saga, state: SagaState, decision: Decision, now: int) -> None:
    """Send every step whose dependencies succeeded, or complete the saga."""
    steps, pointers = state.steps, state.pointers
    done = True
    ready: list[AnyStep] = []
    for step in defn.steps:  # one pass: the hot path of every decision
        progress = steps.get(step.name)
        if progress is not None and progress.succeeded:
            continue
        done = False
        if step.name in pointers or (progress is not None and progress.sent):
            continue  # started (and not succeeded): in progress, or its pointer was settled
        if all(_succeeded(state, name) for name in defn.after(step.name)):
            ready.append(step)
    if done:
        if not pointers:
            _emit(state, decision, SagaCompleted(results=state.results()), now)
        return
    for step in ready:
        try:
            payload = _forward_payload(step, state)
        except Exception as exc:  # user code: any failure is a definition bug, recorded
            reason = f"request builder of {step.name!r} failed: {exc!r}"
            if state.pivot_passed:
                _stick(state, decision, "request_error", reason, now)
            else:
                _start_compensation(defn, state, decision, reason, now)
            return
        _send(state, decision, step, Direction.FORWARD, 1, payload, now)


def _forward_payload(step: AnyStep, state: SagaState) -> JsonObject:
    if isinstance(step, Wait):
        return {}
    # The input was checked (JSON, size) when the saga started: no need to again.
    return dict(state.input) if step.passes_input else _build(step.request, state)


def _compensation_ready(defn: Saga, state: SagaState, name: str) -> bool:
    """Its forward has nothing out, and every planned step after it is compensated."""
    if name in state.pointers:
        return False
    return all(
        _compensation_done(state, later) for later in defn.descendants(name) if later in state.plan
    )


def _compensation_done(state: SagaState, name: str) -> bool:
    """Compensated, or nothing to compensate: its forward turned out to be rejected."""
    progress = state.steps[name]
    return progress.compensated or progress.rejected


def _next_compensation(defn: Saga, state: SagaState, decision: Decision, now: int) -> None:
    """Send every compensation whose dependents are compensated, or end the saga."""
    if all(_compensation_done(state, name) for name in state.plan):
        if not state.pointers:
            compensated = [n for n in state.compensated_order if n in state.plan]
            _emit(state, decision, SagaCompensated(compensated=compensated), now)
        return
    for name in state.plan:
        if _compensation_done(state, name) or not _compensation_ready(defn, state, name):
            continue
        step = defn.step(name)
        assert isinstance(step, Step)
        progress = state.steps[name]
        try:
            if step.compensation_request is not None:
                payload = _build(step.compensation_request, state)
            else:
                payload = dict(progress.payload or {})
        except Exception as exc:  # user code
            reason = f"compensation request of {name!r}: {exc!r}"
            _stick(state, decision, "request_error", reason, now)
            return
        _send(state, decision, step, Direction.COMPENSATE, 1, payload, now)


def _decide_cancel(defn: Saga, state: SagaState, decision: Decision, now: int) -> bool:
    if state.compensating or state.pivot_passed or state.pivot_pending:
        return False
    if state.cancel_reason is not None:
        reason = f"cancelled: {state.cancel_reason}"
        _start_compensation(defn, state, decision, reason, now, awaits=False)
        return True
    if state.deadline_at_ms is not None and now >= state.deadline_at_ms:
        _start_compensation(defn, state, decision, "saga deadline passed", now, awaits=False)
        return True
    return False


def _decide_pointer(
    defn: Saga, state: SagaState, decision: Decision, pointer: StepPointer, now: int
) -> bool:
    """Take at most one decision about one step in progress; True if an event was emitted."""
    before = len(decision.events)
    step = defn.step(pointer.step)
    forward = pointer.direction is Direction.FORWARD
    if pointer.phase in (Phase.IN_FLIGHT, Phase.ACCEPTED, Phase.AWAITING):
        if pointer.phase is Phase.AWAITING and pointer.event is not None:
            signal = state.signal_for(pointer.event)
            if signal is not None:
                done = StepSucceeded(
                    step=pointer.step,
                    direction=Direction.FORWARD,
                    attempt=pointer.attempts,
                    result=dict(signal.payload),
                )
                _emit(state, decision, done, now)
                return True
        if pointer.timeout_at_ms is None or now < pointer.timeout_at_ms:
            return False  # None: held, waiting for a slot; its timeout has not started
        _emit(state, decision, _timed_out(step, pointer), now)
    elif pointer.phase is Phase.FAILED:
        if state.compensating and forward:
            return False  # settled: its outcome is unknown, and it is compensated
        _step_after_failure(defn, state, decision, pointer, now)
    elif pointer.phase is Phase.WAITING:
        assert pointer.retry_at_ms is not None
        if now < pointer.retry_at_ms:
            return False
        payload = pointer.payload
        _send(state, decision, step, pointer.direction, pointer.attempts + 1, payload, now)
    elif pointer.phase is Phase.REJECTED:
        if not forward:
            _stick(
                state,
                decision,
                "compensation_rejected",
                f"compensation of {step.name!r} was rejected",
                now,
                pointer,
            )
        elif isinstance(step, Step) and step.kind is StepKind.RETRIABLE:
            _stick(
                state,
                decision,
                "rejected_after_pivot",
                f"step {step.name!r} was rejected after the pivot",
                now,
                pointer,
            )
        elif not state.compensating:
            _start_compensation(defn, state, decision, f"step {step.name!r} was rejected", now)
    return len(decision.events) > before


def _timed_out(step: AnyStep, pointer: StepPointer) -> StepFailed:
    if isinstance(step, Wait):
        code, message, final = (
            "event_timeout",
            f"no event {step.event!r} within {step.timeout}",
            True,
        )
    elif pointer.phase is Phase.ACCEPTED:
        code = "completion_timeout"
        message = f"accepted, but not completed within {step.completion_timeout}"
        final = False
    else:
        code, message, final = "timeout", f"no reply within {step.timeout}", False
    return StepFailed(
        step=pointer.step,
        direction=pointer.direction,
        attempt=pointer.attempts,
        error=_error(code, message),
        final=final,
    )


def _decide_once(defn: Saga, state: SagaState, decision: Decision, now: int) -> bool:
    """Take at most one decision; True if one was taken (an event was emitted)."""
    before = len(decision.events)
    if _decide_cancel(defn, state, decision, now):
        return True
    if state.compensating:
        settle_forward(state)
    for name, pointer in list(state.pointers.items()):
        if pointer.phase is Phase.SUCCEEDED:
            del state.pointers[name]  # done: its dependents may start
    for pointer in list(state.pointers.values()):
        if _decide_pointer(defn, state, decision, pointer, now):
            return True
    if state.compensating:
        _next_compensation(defn, state, decision, now)
    elif state.ready_may_change or not state.pointers:
        state.ready_may_change = False
        _next_forward(defn, state, decision, now)
    return len(decision.events) > before


def _poll(defn: Saga, state: SagaState, decision: Decision, now: int) -> None:
    """Re-send every accepted command whose poll is due: its recorded reply is its outcome."""
    for pointer in state.pointers.values():
        if pointer.phase is not Phase.ACCEPTED or pointer.is_wait:
            continue
        step = defn.step(pointer.step)
        every = step.poll_every_ms if isinstance(step, Step) else 0
        if pointer.poll_at_ms is None:
            pointer.poll_at_ms = now + every
        elif now >= pointer.poll_at_ms:
            decision.commands.append(command_for(state, pointer))
            pointer.poll_at_ms = now + every


def poll_now(state: SagaState, step: str) -> bool:
    """A completion was announced for ``step``: poll it at the next ``decide``. False if the
    step is not accepted (any more): nothing to ask."""
    pointer = state.pointers.get(step)
    if pointer is None or pointer.phase is not Phase.ACCEPTED:
        return False
    pointer.poll_at_ms = 0
    return True


def wake_at(state: SagaState) -> int | None:
    """When ``decide`` next has something to do by time alone (None: only an input can)."""
    if state.is_final or state.stuck is not None:
        return None
    times: list[int] = []
    for pointer in state.pointers.values():
        if pointer.phase in (Phase.IN_FLIGHT, Phase.ACCEPTED, Phase.AWAITING):
            if pointer.timeout_at_ms is not None:
                times.append(pointer.timeout_at_ms)
            if pointer.phase is Phase.ACCEPTED and pointer.poll_at_ms is not None:
                times.append(pointer.poll_at_ms)
        elif pointer.phase is Phase.WAITING and pointer.retry_at_ms is not None:
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
    if not state.is_final and state.stuck is None:
        _poll(defn, state, decision, now_ms)
    decision.wake_at_ms = wake_at(state)
    return decision


def on_reply(
    defn: Saga, state: SagaState, command: Command, reply: Reply, now_ms: int
) -> list[NewEvent]:
    """The event a reply makes, or nothing if it is stale (duplicate, late, other direction).

    A success or rejection for a step in progress is accepted even from an earlier attempt,
    after a timeout or as a long-running step's completion (the idempotency key is the same,
    so it describes the same effect); a failure counts only for the attempt in flight or
    accepted. An ``accepted`` reply makes the step wait for its completion, and one with
    more heartbeats than recorded extends its deadline.
    """
    if state.is_final or state.stuck is not None:
        return []
    pointer = state.pointers.get(command.step)
    if pointer is None or pointer.direction is not command.direction or pointer.is_wait:
        return []
    replied: Payload
    if reply.outcome is Outcome.ACCEPTED:
        replied_or_none = _accepted(defn, pointer, command, reply, now_ms)
        if replied_or_none is None:
            return []
        replied = replied_or_none
    elif reply.outcome is Outcome.FAILED:
        if pointer.phase not in (Phase.IN_FLIGHT, Phase.ACCEPTED):
            return []
        if command.attempt != pointer.attempts:
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
        if pointer.phase not in (Phase.IN_FLIGHT, Phase.FAILED, Phase.WAITING, Phase.ACCEPTED):
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


def _accepted(
    defn: Saga, pointer: StepPointer, command: Command, reply: Reply, now_ms: int
) -> StepAccepted | StepFailed | None:
    """What an ``accepted`` reply records: the acceptance, a heartbeat, or nothing new."""
    step = defn.step(command.step)
    if (
        not isinstance(step, Step)
        or not step.long_running
        or command.direction is not Direction.FORWARD
    ):
        if pointer.phase is not Phase.IN_FLIGHT or command.attempt != pointer.attempts:
            return None
        return StepFailed(
            step=command.step,
            direction=command.direction,
            attempt=command.attempt,
            error=_error(
                "unexpected_accept",
                f"the participant answered 'accepted', but {command.direction.value} of step"
                f" {command.step!r} is not long-running (it has no completion_timeout)",
            ),
            final=True,
        )
    if pointer.phase is Phase.ACCEPTED and reply.heartbeats <= pointer.heartbeats:
        return None  # a poll's answer: still under way, nothing new
    if pointer.phase not in (Phase.IN_FLIGHT, Phase.FAILED, Phase.WAITING, Phase.ACCEPTED):
        return None
    return StepAccepted(
        step=command.step,
        direction=command.direction,
        attempt=pointer.attempts,
        token=reply.token or command.idempotency_key,
        heartbeats=reply.heartbeats,
        deadline_at_ms=now_ms + step.completion_timeout_ms,
    )


def on_signal(
    defn: Saga,
    state: SagaState,
    event: str,
    *,
    event_id: str,
    payload: JsonObject,
    sender: str,
    now_ms: int,
) -> list[NewEvent]:
    """Record an outside event for the saga; nothing if that id was received already.

    StateError when it cannot be taken: the saga is finished, no step of its definition
    waits for ``event``, or every step that does has taken another event already.
    """
    if state.is_final:
        raise StateError(f"saga is already {state.status.value}", saga_id=state.saga_id)
    for signal in state.signals:
        if signal.event == event and signal.id == event_id:
            return []
    waiting = defn.waits_for(event)
    if not waiting:
        raise StateError(
            f"no step of saga {defn.name!r} v{defn.version} waits for event {event!r}",
            saga_id=state.saga_id,
        )
    taken = sum(1 for s in state.signals if s.event == event)
    if taken >= len(waiting):
        raise StateError(
            f"event {event!r} was already received (id"
            f" {next(s.id for s in state.signals if s.event == event)!r}); step"
            f" {waiting[0]!r} takes one",
            saga_id=state.saga_id,
        )
    received = SignalReceived(event=event, id=event_id, payload=payload, sender=sender)
    record(state, received, now_ms)
    events = [new_event(received, now_ms)]
    stuck_on = None if state.stuck is None else state.pointers.get(str(state.stuck.get("step")))
    if stuck_on is not None and stuck_on.event == event:
        # Stuck because this event did not come in time: now it has, so the wait resumes.
        resumed = SagaResumed(reason=f"event {event!r} arrived (id {event_id!r})")
        record(state, resumed, now_ms)
        events.append(new_event(resumed, now_ms))
    return events
