"""timeline(): a saga's events as steps and compensations with attempts, and operator actions."""

from __future__ import annotations

from typing import Any

from saga.engine.timeline import AttemptOutcome, timeline
from saga.events import Event, EventType


def events(*specs: tuple[EventType, dict[str, Any]]) -> list[Event]:
    return [
        Event(saga_id="s", seq=i, type=kind, data=data, at_ms=1000 + i)
        for i, (kind, data) in enumerate(specs, start=1)
    ]


def sent(
    step: str, direction: str, attempt: int, kind: str = "compensatable"
) -> tuple[EventType, dict[str, Any]]:
    return EventType.STEP_SENT, {
        "step": step, "direction": direction, "attempt": attempt, "kind": kind,
        "service": "svc", "command": "cmd", "payload": {}, "timeout_at_ms": 0,
    }  # fmt: skip


def outcome(
    kind: EventType, step: str, direction: str, **extra: Any
) -> tuple[EventType, dict[str, Any]]:
    return kind, {"step": step, "direction": direction, **extra}


BOOM = {"code": "boom", "message": "down", "details": {}}


def test_retries_compensation_stuck_and_resolve() -> None:
    found = timeline(
        events(
            (EventType.SAGA_STARTED, {"name": "o", "version": 1, "input": {}}),
            sent("a", "forward", 1),
            outcome(EventType.STEP_SUCCEEDED, "a", "forward", attempt=1, result={}),
            sent("b", "forward", 1),
            outcome(EventType.STEP_FAILED, "b", "forward", attempt=1, error=BOOM),
            outcome(EventType.RETRY_SCHEDULED, "b", "forward", attempt=2, retry_at_ms=5000),
            sent("b", "forward", 2),
            outcome(EventType.STEP_REJECTED, "b", "forward", attempt=2, error=BOOM),
            (EventType.COMPENSATION_STARTED, {"reason": "b said no", "steps": ["a"]}),
            sent("a", "compensate", 1),
            outcome(EventType.STEP_FAILED, "a", "compensate", attempt=1, error=BOOM),
            (EventType.SAGA_STUCK, {"reason": "fails", "step": "a", "direction": "compensate"}),
            (EventType.OPERATOR_ACTION, {"action": "resolve", "actor": "ana", "reason": "by hand",
                                         "step": "a", "direction": "compensate"}),
            (EventType.SAGA_COMPENSATED, {"compensated": ["a"]}),
        )
    )  # fmt: skip
    assert [(e.step, e.state) for e in found.steps] == [("a", "succeeded"), ("b", "rejected")]
    b = found.steps[1]
    assert [a.outcome for a in b.attempts] == [AttemptOutcome.FAILED, AttemptOutcome.REJECTED]
    assert b.attempts[0].retry_at_ms == 5000
    assert b.attempts[0].error == BOOM
    [comp] = found.compensations
    assert comp.state == "done_by_hand"
    assert comp.by_hand is not None
    assert (comp.by_hand.actor, comp.by_hand.reason) == ("ana", "by hand")
    [audit] = found.operator_actions
    assert (audit.action, audit.step, audit.direction) == ("resolve", "a", "compensate")
    assert [m.kind for m in found.marks] == [
        "started", "compensation_started", "stuck", "compensated",
    ]  # fmt: skip
    assert found.marks[1].reason == "b said no"


def test_stuck_then_waiting_and_in_flight_states() -> None:
    found = timeline(
        events(
            (EventType.SAGA_STARTED, {"name": "o", "version": 1, "input": {}}),
            sent("a", "forward", 1),
            outcome(EventType.STEP_FAILED, "a", "forward", attempt=1, error=BOOM),
            (EventType.SAGA_STUCK, {"reason": "x", "step": "a", "direction": "forward"}),
        )
    )
    assert found.steps[0].state == "stuck"
    resumed = timeline(
        events(
            (EventType.SAGA_STARTED, {"name": "o", "version": 1, "input": {}}),
            sent("a", "forward", 1),
            outcome(EventType.STEP_FAILED, "a", "forward", attempt=1, error=BOOM),
            (EventType.SAGA_STUCK, {"reason": "x", "step": "a", "direction": "forward"}),
            (EventType.SAGA_RESUMED, {"reason": "fixed"}),
            sent("a", "forward", 2),
        )
    )
    assert resumed.steps[0].state == "in_flight"
    waiting = timeline(
        events(
            (EventType.SAGA_STARTED, {"name": "o", "version": 1, "input": {}}),
            sent("a", "forward", 1),
            outcome(EventType.STEP_FAILED, "a", "forward", attempt=1, error=BOOM),
            outcome(EventType.RETRY_SCHEDULED, "a", "forward", attempt=2, retry_at_ms=9),
        )
    )
    assert waiting.steps[0].state == "waiting"


def test_force_forward_takes_the_pivot_as_done_but_only_retries_later_steps() -> None:
    pivot = timeline(
        events(
            (EventType.SAGA_STARTED, {"name": "o", "version": 1, "input": {}}),
            sent("p", "forward", 1, kind="pivot"),
            outcome(EventType.STEP_FAILED, "p", "forward", attempt=1, error=BOOM),
            (EventType.OPERATOR_ACTION, {"action": "force_forward", "actor": "x", "reason": "y",
                                         "step": "p", "direction": "forward"}),
        )
    )  # fmt: skip
    assert pivot.steps[0].state == "done_by_hand"
    later = timeline(
        events(
            (EventType.SAGA_STARTED, {"name": "o", "version": 1, "input": {}}),
            sent("r", "forward", 1, kind="retriable"),
            outcome(EventType.STEP_FAILED, "r", "forward", attempt=1, error=BOOM),
            (EventType.OPERATOR_ACTION, {"action": "force_forward", "actor": "x", "reason": "y",
                                         "step": "r", "direction": "forward"}),
        )
    )  # fmt: skip
    assert later.steps[0].state == "failed"
    assert len(later.operator_actions) == 1


def test_a_cancel_has_no_step_and_odd_events_are_skipped() -> None:
    found = timeline(
        events(
            (EventType.SAGA_STARTED, {"name": "o", "version": 1, "input": {}}),
            (EventType.OPERATOR_ACTION, {"action": "cancel", "actor": "x", "reason": "y"}),
            outcome(EventType.STEP_SUCCEEDED, "ghost", "forward", attempt=1),
            outcome(EventType.RETRY_SCHEDULED, "ghost", "sideways", attempt=1, retry_at_ms=1),
        )
    )
    assert found.steps == []
    assert found.operator_actions[0].step is None
