"""The built-in invariants catch what the real engine never does, on hand-made logs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from saga import SagaStatus
from saga.coordinator import SagaResult
from saga.engine.payloads import StepSent, StepSucceeded
from saga.events import Event, EventType
from saga.protocol import Direction
from saga.testing.invariants import check_invariants
from saga.testing.schedule import Run
from tests.testing.shop import order_saga


def run_of(*entries: tuple[EventType, dict[str, Any]], status: SagaStatus) -> Run:
    started = (EventType.SAGA_STARTED, {"name": "order", "version": 1, "input": {}})
    events = [
        Event(saga_id="s", seq=seq, type=kind, data=data, at_ms=seq)
        for seq, (kind, data) in enumerate([started, *entries], start=1)
    ]
    run = Run(schedule=(), world=None, events=events)
    run.result = SagaResult(saga_id="s", name="order", version=1, status=status)
    return run


def sent(step: str, direction: str = "forward") -> tuple[EventType, dict[str, Any]]:
    payload = StepSent(
        step=step, direction=Direction(direction), attempt=1, service="svc", command="cmd",
        payload={}, timeout_at_ms=0,
    )  # fmt: skip
    return (EventType.STEP_SENT, payload.encode())


def undone(step: str) -> tuple[EventType, dict[str, Any]]:
    payload = StepSucceeded(step=step, direction=Direction.COMPENSATE, attempt=1)
    return (EventType.STEP_SUCCEEDED, payload.encode())


def plan(*steps: str) -> tuple[EventType, dict[str, Any]]:
    return (EventType.COMPENSATION_STARTED, {"reason": "test", "steps": list(steps)})


def test_compensations_out_of_reverse_order_are_caught() -> None:
    run = run_of(
        sent("create"), sent("stock"), plan("create", "stock"), status=SagaStatus.COMPENSATING
    )
    problem = check_invariants(order_saga(), run)
    assert problem == (
        "the compensation plan ['create', 'stock'] puts 'create' before 'stock', which depends"
        " on it"
    )


def test_compensations_run_out_of_plan_order_are_caught() -> None:
    run = run_of(
        sent("create"),
        sent("stock"),
        plan("stock", "create"),
        sent("create", "compensate"),
        undone("create"),
        status=SagaStatus.COMPENSATING,
    )
    problem = check_invariants(order_saga(), run)
    assert problem == (
        "compensation of 'create' was sent before that of 'stock', which came after it"
    )


def test_a_compensation_before_its_step_is_caught() -> None:
    run = run_of(sent("stock", "compensate"), status=SagaStatus.RUNNING)
    assert check_invariants(order_saga(), run) == (
        "compensation of 'stock' was sent before its step"
    )


def test_completed_and_compensated_both_is_a_contradiction() -> None:
    run = run_of(
        (EventType.SAGA_COMPLETED, {}),
        (EventType.SAGA_COMPENSATED, {}),
        status=SagaStatus.COMPLETED,
    )
    assert check_invariants(order_saga(), run) == (
        "the log ends the saga more than once: saga_completed, saga_compensated"
    )


def test_a_gap_in_the_log_is_caught() -> None:
    run = run_of(sent("create"), status=SagaStatus.RUNNING)
    run.events[1] = replace(run.events[1], seq=3)
    assert check_invariants(order_saga(), run) == "the log has a gap: seqs [1, 3]"


def test_a_run_that_stopped_while_running_is_not_settled() -> None:
    run = run_of(sent("create"), status=SagaStatus.RUNNING)
    assert check_invariants(order_saga(), run) == (
        "the saga did not settle: it is running, not completed, compensated or stuck"
    )
