"""The saga invariants every explored run must keep, checked on its log and participants.

Each check returns None when it holds, else a sentence saying what broke. They read the run's
log (the only source of truth) and what the participants recorded (their effects).
"""

from __future__ import annotations

from collections.abc import Callable

from saga.definition import Saga, Step, StepKind
from saga.engine.payloads import (
    CompensationStarted,
    StepRejected,
    StepSent,
    StepSucceeded,
    payload_of,
)
from saga.events import EventType, SagaStatus
from saga.protocol import Direction, Outcome, Reply
from saga.testing.schedule import Run

_TERMINAL = (EventType.SAGA_COMPLETED, EventType.SAGA_COMPENSATED)


def check_invariants(saga: Saga, run: Run) -> str | None:
    """The first built-in invariant ``run`` breaks, or None."""
    checks: list[Callable[[Saga, Run], str | None]] = [
        _log_is_whole,
        _written_ahead,
        _compensations_follow_steps,
        _effects_once,
        _settled,
        _ends_match_effects,
    ]
    for check in checks:
        problem = check(saga, run)
        if problem is not None:
            return problem
    return None


def _settled(saga: Saga, run: Run) -> str | None:
    if run.unsettled is not None:
        return f"the saga did not settle: {run.unsettled}"
    result = run.result
    if result is None:
        return "the saga has no result"
    if not result.status.is_final and result.status is not SagaStatus.STUCK:
        return (
            f"the saga did not settle: it is {result.status.value},"
            " not completed, compensated or stuck"
        )
    if result.status is SagaStatus.STUCK and not (result.stuck or {}).get("reason"):
        return "the saga is stuck without a reason"
    return None


def _log_is_whole(saga: Saga, run: Run) -> str | None:
    events = run.events
    if not events or events[0].type is not EventType.SAGA_STARTED:
        return "the log does not begin with saga_started"
    seqs = [event.seq for event in events]
    if seqs != list(range(1, len(events) + 1)):
        return f"the log has a gap: seqs {seqs}"
    ends = [event.type.value for event in events if event.type in _TERMINAL]
    if len(ends) > 1:
        return f"the log ends the saga more than once: {', '.join(ends)}"
    if ends and events[-1].type not in _TERMINAL:
        return f"the log goes on after {ends[0]}: {events[-1].type.value}"
    if run.result is not None and ends and run.result.status.value != ends[0].removeprefix("saga_"):
        return f"the saga's status is {run.result.status.value} but its log says {ends[0]}"
    return None


def _written_ahead(saga: Saga, run: Run) -> str | None:
    recorded = {
        (sent.step, sent.direction, sent.attempt)
        for sent in map(payload_of, run.events)
        if isinstance(sent, StepSent)
    }
    for item in run.commands:
        point = item.point
        if (point.step, point.direction, point.attempt) not in recorded:
            return f"{point} was sent but never recorded as sent in the log"
    return None


def _compensations_follow_steps(saga: Saga, run: Run) -> str | None:
    """Compensation runs in reverse dependency order: a step's compensation is sent only
    after every planned step that depended on it was compensated (or turned out rejected)."""
    forward_sent: set[str] = set()
    rejected: set[str] = set()
    plans: list[list[str]] = []
    undone: list[str] = []
    for payload in map(payload_of, run.events):
        match payload:
            case StepSent(direction=Direction.FORWARD):
                forward_sent.add(payload.step)
            case StepSent() if payload.step not in forward_sent:
                return f"compensation of {payload.step!r} was sent before its step"
            case StepSent() if payload.attempt == 1 and plans:
                waiting = [
                    later
                    for later in saga.descendants(payload.step)
                    if later in plans[0] and later not in undone and later not in rejected
                ]
                if waiting:
                    return (
                        f"compensation of {payload.step!r} was sent before that of"
                        f" {waiting[0]!r}, which came after it"
                    )
            case StepRejected(direction=Direction.FORWARD):
                rejected.add(payload.step)
            case CompensationStarted():
                plans.append(list(payload.steps))
            case StepSucceeded(direction=Direction.COMPENSATE):
                undone.append(payload.step)
    if len(plans) > 1:
        return f"compensation started {len(plans)} times"
    plan = plans[0] if plans else []
    if len(set(plan)) != len(plan):
        return f"the compensation plan {plan} names a step twice"
    for i, name in enumerate(plan):
        early = [later for later in plan[i + 1 :] if later in saga.descendants(name)]
        if early:
            return (
                f"the compensation plan {plan} puts {name!r} before {early[0]!r},"
                " which depends on it"
            )
    needed = [name for name in plan if name not in rejected]
    compensated = run.result is not None and run.result.status is SagaStatus.COMPENSATED
    if compensated and sorted(undone) != sorted(needed):
        return f"the saga is compensated but only {undone} of {needed} were compensated"
    return None


def _effects_once(saga: Saga, run: Run) -> str | None:
    for (step, direction), times in sorted(run.effects.items()):
        if times > 1:
            what = "step" if direction is Direction.FORWARD else "compensation of step"
            return f"the {what} {step!r} took effect {times} times at its participant"
    return None


def _outcomes(run: Run, direction: Direction) -> dict[str, Reply]:
    """What each step's participant recorded for it in ``direction`` (the effect, if any)."""
    found: dict[str, Reply] = {}
    for item in run.commands:
        if item.point.direction is direction and item.recorded:
            found.setdefault(item.point.step, item.recorded[0])
    return found


def _acted(reply: Reply) -> bool:
    result = reply.result or {}
    return reply.outcome is Outcome.SUCCEEDED and not result.get("fenced")


def _ends_match_effects(saga: Saga, run: Run) -> str | None:
    if run.result is None:
        return None
    status = run.result.status
    forward = {step: r for step, r in _outcomes(run, Direction.FORWARD).items() if _acted(r)}
    undone = {step for step, r in _outcomes(run, Direction.COMPENSATE).items() if _acted(r)}
    # A handler that took effect and then raised: no success was recorded, yet there is an
    # effect, so a compensated saga must have run that step's compensation handler.
    forward |= dict.fromkeys(run.failed_after_effect(Direction.FORWARD), Reply.succeeded())
    plan = _plan(run)
    for step in saga.steps:
        if not isinstance(step, Step):
            continue  # a wait sends nothing: it has no effect to check
        took_effect = step.name in forward
        if status is SagaStatus.COMPLETED and not took_effect:
            return f"the saga completed but step {step.name!r} never took effect"
        if status is SagaStatus.COMPLETED and step.name in undone:
            return f"the saga completed but step {step.name!r} was compensated"
        if not took_effect or step.kind is not StepKind.COMPENSATABLE:
            if status is SagaStatus.COMPENSATED and took_effect:
                return (
                    f"the saga is compensated but {step.kind.value} step {step.name!r} took effect"
                )
            continue
        if plan is not None and step.name not in plan:
            return (
                f"step {step.name!r} took effect but is missing from the compensation plan {plan}"
            )
        if status is SagaStatus.COMPENSATED and step.name not in undone:
            return (
                f"the saga is compensated but step {step.name!r} took effect and was never undone"
            )
    return None


def _plan(run: Run) -> list[str] | None:
    for payload in map(payload_of, run.events):
        if isinstance(payload, CompensationStarted):
            return list(payload.steps)
    return None
