"""Operator actions (retry, cancel, resolve, skip, force forward), their refusals, and dry runs.

Each action is one ``operator_action`` event: an audit entry (who, why) that also takes
effect when applied. ``refusal`` says why an action does not fit a saga's state; ``preview``
answers what an action would do (which compensations, in what order) without doing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saga.definition import Saga
from saga.engine.decide import decide
from saga.engine.health import health
from saga.engine.payloads import Action, OperatorAction, new_event
from saga.engine.state import Phase, SagaState, apply
from saga.errors import StateError
from saga.events import Health, JsonObject, NewEvent, SagaStatus
from saga.protocol import Command, Direction


def refusal(defn: Saga, state: SagaState, action: Action) -> str | None:
    """None if ``action`` fits the saga's state now, else the reason it does not."""
    if state.is_final:
        return f"saga is already {state.status.value}"
    pointer = state.pointer
    if action is Action.CANCEL:
        if state.compensating:
            return "saga is already compensating"
        if state.pivot_passed:
            return "saga is past its pivot; it can only move forward"
        if state.pivot_pending:
            return "the pivot was sent and its outcome is not known; use force_forward or retry"
        if state.cancel_reason is not None:
            return "a cancel was already requested"
        return None
    if action is Action.RETRY:
        if state.stuck is not None or (pointer is not None and pointer.phase is Phase.WAITING):
            return None
        return "nothing to retry: the saga is not stuck and no retry is scheduled"
    if action is Action.RESOLVE:
        if (
            pointer is not None
            and pointer.direction is Direction.COMPENSATE
            and pointer.phase is not Phase.SUCCEEDED
        ):
            return None
        return "no compensation is in progress to resolve"
    if action is Action.SKIP:
        if (
            not state.compensating
            and pointer is not None
            and pointer.direction is Direction.FORWARD
            and state.failing
        ):
            return None
        return "no failed forward step to skip"
    if state.at_pivot and not state.compensating:
        return None
    if state.pivot_passed and state.failing:
        return None
    return "force_forward needs a saga at its pivot, or past it with a failing step"


def on_action(
    defn: Saga,
    state: SagaState,
    action: Action,
    *,
    actor: str,
    reason: str,
    now_ms: int,
    result: JsonObject | None = None,
) -> list[NewEvent]:
    """Record an operator action (applied to ``state``); StateError if it does not fit."""
    why_not = refusal(defn, state, action)
    if why_not is not None:
        raise StateError(f"cannot {action.value}: {why_not}", saga_id=state.saga_id)
    if not reason or not reason.strip():
        raise StateError("an operator action needs a reason", saga_id=state.saga_id)
    pointer = state.pointer
    done = OperatorAction(
        action=action,
        actor=actor,
        reason=reason,
        step=None if pointer is None else pointer.step,
        direction=None if pointer is None else pointer.direction,
        result=(result if result is not None else {"skipped": True})
        if action is Action.SKIP
        else None,
    )
    event = new_event(done, now_ms)
    apply(state, event)
    return [event]


@dataclass(frozen=True, kw_only=True)
class Preview:
    """What an action would do, decided on a copy of the state: nothing is written or sent."""

    action: Action
    events: list[NewEvent]
    commands: list[Command]
    compensations: list[str] = field(default_factory=list)
    """Compensations still to run after the action, in the order they would run."""
    status: SagaStatus
    health: Health | None


def preview(
    defn: Saga,
    state: SagaState,
    action: Action,
    *,
    actor: str,
    reason: str,
    now_ms: int,
    result: JsonObject | None = None,
) -> Preview:
    """Dry run of ``on_action`` then ``decide``; raises StateError like the real action."""
    work = state.copy()
    events = on_action(defn, work, action, actor=actor, reason=reason, now_ms=now_ms, result=result)
    decision = decide(defn, work, now_ms)
    remaining = [name for name in work.plan if not work.steps[name].compensated]
    return Preview(
        action=action,
        events=events + decision.events,
        commands=decision.commands,
        compensations=remaining if work.compensating else [],
        status=work.status,
        health=health(work),
    )
