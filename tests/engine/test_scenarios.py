"""Scenario tests of the decision logic: one path at a time, with exact logs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga import engine
from saga.definition import RetryPolicy, Saga, Step, StepKind
from saga.errors import StateError
from saga.events import EventType, NewEvent, SagaStatus
from saga.protocol import Command, Direction, Reply

T0 = 1_000_000


def three_steps(**saga_kwargs: object) -> Saga:
    return Saga(
        name="order",
        steps=(
            Step(name="create", service="orders", command="create", compensation="reject"),
            Step(name="credit", service="payments", command="reserve", compensation="release"),
            Step(
                name="stock",
                service="inventory",
                command="reserve",
                compensation="release",
                request=lambda saga_input, results: {
                    "sku": saga_input["sku"],
                    "credit": results["credit"],
                },
            ),
        ),
        **saga_kwargs,  # type: ignore[arg-type]
    )


def begin(defn: Saga, saga_input: dict[str, object] | None = None) -> engine.SagaState:
    started = NewEvent(
        type=EventType.SAGA_STARTED,
        data={
            "name": defn.name,
            "version": defn.version,
            "input": saga_input or {"sku": "A1"},
            "deadline_at_ms": None if defn.deadline_ms is None else T0 + defn.deadline_ms,
        },
        at_ms=T0,
    )
    return engine.new_state("s1", started)


def reply(
    state: engine.SagaState, command: Command, answer: Reply, now: int = T0
) -> engine.Decision:
    events = engine.on_reply(_defn_of[state.name], state, command, answer, now)
    decision = engine.decide(_defn_of[state.name], state, now)
    decision.events[:0] = events
    return decision


_defn_of: dict[str, Saga] = {}


def run_script(defn: Saga, answers: list[Reply]) -> tuple[engine.SagaState, list[Command]]:
    _defn_of[defn.name] = defn
    state = begin(defn)
    decision = engine.decide(defn, state, T0)
    sent: list[Command] = []
    for answer in answers:
        (command,) = decision.commands
        sent.append(command)
        decision = reply(state, command, answer)
    return state, sent


def test_three_steps_without_failure_complete() -> None:
    defn = three_steps()
    state, sent = run_script(defn, [Reply.succeeded({"n": i}) for i in range(3)])
    assert state.status is SagaStatus.COMPLETED
    assert [(c.step, c.direction) for c in sent] == [
        ("create", Direction.FORWARD),
        ("credit", Direction.FORWARD),
        ("stock", Direction.FORWARD),
    ]
    # The request builder saw the input and the earlier result.
    assert sent[2].payload == {"sku": "A1", "credit": {"n": 1}}


def test_third_step_rejected_compensates_two_then_one() -> None:
    defn = three_steps()
    answers = [
        Reply.succeeded(),
        Reply.succeeded(),
        Reply.rejected("out_of_stock", "none left"),
        Reply.succeeded(),
        Reply.succeeded(),
    ]
    state, sent = run_script(defn, answers)
    assert state.status is SagaStatus.COMPENSATED
    assert [(c.step, c.direction, c.command) for c in sent[3:]] == [
        ("credit", Direction.COMPENSATE, "release"),
        ("create", Direction.COMPENSATE, "reject"),
    ]
    # The compensation gets the forward request by default.
    assert sent[3].payload == sent[1].payload
    assert state.plan == ["credit", "create"]


def test_timeout_retries_with_same_idempotency_key_then_compensates() -> None:
    defn = three_steps()
    _defn_of[defn.name] = defn
    state = begin(defn)
    decision = engine.decide(defn, state, T0)
    first = decision.commands[0]
    assert decision.wake_at_ms == T0 + 10_000
    decision = engine.decide(defn, state, T0 + 10_000)  # the timeout passes
    types = [e.type for e in decision.events]
    assert types == [EventType.STEP_FAILED, EventType.RETRY_SCHEDULED]
    assert decision.commands == []
    decision = engine.decide(defn, state, decision.wake_at_ms or 0)
    (second,) = decision.commands
    assert second.attempt == 2
    assert second.idempotency_key == first.idempotency_key
    now = decision.wake_at_ms or 0
    decision = engine.decide(defn, state, now)
    decision = engine.decide(defn, state, decision.wake_at_ms or 0)
    (third,) = decision.commands
    assert third.attempt == 3
    decision = engine.decide(defn, state, decision.wake_at_ms or 0)
    # Retries exhausted: the step's outcome is unknown, so it is compensated.
    assert EventType.COMPENSATION_STARTED in [e.type for e in decision.events]
    (comp,) = decision.commands
    assert (comp.step, comp.direction) == ("create", Direction.COMPENSATE)


def test_late_success_after_timeout_is_accepted() -> None:
    defn = three_steps()
    _defn_of[defn.name] = defn
    state = begin(defn)
    first = engine.decide(defn, state, T0).commands[0]
    engine.decide(defn, state, T0 + 10_000)  # timed out, retry scheduled
    decision = reply(state, first, Reply.succeeded({"late": True}), T0 + 10_001)
    assert state.steps["create"].result == {"late": True}
    assert decision.commands[0].step == "credit"


def test_duplicate_reply_is_ignored() -> None:
    defn = three_steps()
    _defn_of[defn.name] = defn
    state = begin(defn)
    first = engine.decide(defn, state, T0).commands[0]
    reply(state, first, Reply.succeeded())
    assert engine.on_reply(defn, state, first, Reply.succeeded(), T0) == []


def test_cancel_compensates_in_flight_step_too() -> None:
    defn = three_steps()
    _defn_of[defn.name] = defn
    state = begin(defn)
    first = engine.decide(defn, state, T0).commands[0]
    reply(state, first, Reply.succeeded())
    events = engine.on_action(
        defn, state, engine.Action.CANCEL, actor="ops", reason="customer changed mind", now_ms=T0
    )
    decision = engine.decide(defn, state, T0)
    assert events[0].type is EventType.OPERATOR_ACTION
    assert events[0].data["actor"] == "ops"
    assert state.plan == ["credit", "create"]  # credit was in flight: it may have acted
    assert decision.commands[0].direction is Direction.COMPENSATE


def test_cancel_after_pivot_is_refused() -> None:
    defn = Saga(
        name="p",
        steps=(
            Step(name="a", service="x", command="a", compensation="ua"),
            Step(name="p", service="x", command="p", kind=StepKind.PIVOT),
            Step(name="r", service="x", command="r", kind=StepKind.RETRIABLE),
        ),
    )
    state, _ = run_script(defn, [Reply.succeeded(), Reply.succeeded()])
    with pytest.raises(StateError, match="pivot"):
        engine.on_action(defn, state, engine.Action.CANCEL, actor="a", reason="late", now_ms=T0)


def test_rejected_pivot_compensates_earlier_steps() -> None:
    defn = Saga(
        name="p2",
        steps=(
            Step(name="a", service="x", command="a", compensation="ua"),
            Step(name="p", service="x", command="p", kind=StepKind.PIVOT),
        ),
    )
    state, sent = run_script(
        defn, [Reply.succeeded(), Reply.rejected("no", "no"), Reply.succeeded()]
    )
    assert state.status is SagaStatus.COMPENSATED
    assert [(c.step, c.direction) for c in sent] == [
        ("a", Direction.FORWARD),
        ("p", Direction.FORWARD),
        ("a", Direction.COMPENSATE),
    ]


def test_retriable_step_exhausting_policy_is_stuck_then_resumable() -> None:
    defn = Saga(
        name="p3",
        steps=(
            Step(name="p", service="x", command="p", kind=StepKind.PIVOT),
            Step(
                name="r",
                service="x",
                command="r",
                kind=StepKind.RETRIABLE,
                retry=RetryPolicy(initial_interval=timedelta(0), max_attempts=2),
            ),
        ),
    )
    state, _ = run_script(
        defn, [Reply.succeeded(), Reply.failed("x", "down"), Reply.failed("x", "down")]
    )
    assert state.status is SagaStatus.STUCK
    assert state.stuck is not None
    assert state.stuck["code"] == "retries_exhausted"
    assert state.stuck["attempts"] == 2
    engine.on_action(
        defn, state, engine.Action.RETRY, actor="ops", reason="service fixed", now_ms=T0 + 5
    )
    decision = engine.decide(defn, state, T0 + 5)
    (again,) = decision.commands
    assert again.attempt == 3
    assert state.status is SagaStatus.RUNNING
    reply(state, again, Reply.succeeded(), T0 + 6)
    assert state.status is SagaStatus.COMPLETED


def test_compensation_exhausting_policy_is_stuck_with_reason() -> None:
    defn = Saga(
        name="p4",
        steps=(
            Step(
                name="a",
                service="x",
                command="a",
                compensation="ua",
                compensation_retry=RetryPolicy(initial_interval=timedelta(0), max_attempts=2),
            ),
            Step(name="b", service="x", command="b", compensation="ub"),
        ),
    )
    state, _sent = run_script(
        defn,
        [
            Reply.succeeded(),
            Reply.rejected("no", "no"),
            Reply.failed("db", "down"),
            Reply.failed("db", "down"),
        ],
    )
    assert state.status is SagaStatus.STUCK
    assert state.stuck is not None
    assert state.stuck["code"] == "compensation_failed"
    assert state.stuck["step"] == "a"
    assert state.stuck["direction"] == "compensate"
    assert state.stuck["error"]["code"] == "db"


def test_deadline_before_pivot_compensates() -> None:
    defn = three_steps(deadline=timedelta(seconds=5))
    _defn_of[defn.name] = defn
    state = begin(defn)
    first = engine.decide(defn, state, T0).commands[0]
    decision = reply(state, first, Reply.succeeded(), T0 + 1)
    assert decision.wake_at_ms == T0 + 5_000
    decision = engine.decide(defn, state, T0 + 5_000)
    assert state.compensation_reason == "saga deadline passed"
    assert state.plan == ["credit", "create"]


def test_request_builder_error_compensates_before_pivot() -> None:
    defn = Saga(
        name="p5",
        steps=(
            Step(name="a", service="x", command="a", compensation="ua"),
            Step(
                name="b",
                service="x",
                command="b",
                compensation="ub",
                request=lambda i, r: {"v": i["missing"]},
            ),
        ),
    )
    state, _sent = run_script(defn, [Reply.succeeded(), Reply.succeeded()])
    assert state.status is SagaStatus.COMPENSATED
    assert state.plan == ["a"]
    assert "request builder" in (state.compensation_reason or "")


def test_version_mismatch_is_refused() -> None:
    defn = three_steps()
    state = begin(defn)
    other = Saga(name="order", version=2, steps=defn.steps)
    with pytest.raises(StateError):
        engine.decide(other, state, T0)


def test_deadline_passing_while_the_pivot_is_in_flight_waits_for_the_pivot() -> None:
    defn = Saga(
        name="dp",
        steps=(
            Step(name="a", service="x", command="a", compensation="ua"),
            Step(name="p", service="x", command="p", kind=StepKind.PIVOT),
        ),
        deadline=timedelta(seconds=5),
    )
    _defn_of[defn.name] = defn
    state = begin(defn)
    first = engine.decide(defn, state, T0).commands[0]
    decision = reply(state, first, Reply.succeeded(), T0 + 1)
    (pivot,) = decision.commands
    decision = engine.decide(defn, state, T0 + 6_000)  # the deadline has passed
    assert decision.events == []
    assert decision.wake_at_ms == pivot_timeout(state)  # not the passed deadline: no spinning
    decision = reply(state, pivot, Reply.succeeded(), T0 + 6_001)
    assert state.status is SagaStatus.COMPLETED


def pivot_timeout(state: engine.SagaState) -> int | None:
    assert state.pointer is not None
    return state.pointer.timeout_at_ms
