"""Operator actions: what fits which state, what each does, and dry runs that change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga import engine
from saga.definition import RetryPolicy, Saga, Step, StepKind
from saga.engine import Action
from saga.errors import StateError
from saga.events import EventType, Health, SagaStatus
from saga.protocol import Direction, Reply
from tests.engine.test_scenarios import T0, run_script

NOW = T0 + 100
ONCE = RetryPolicy(initial_interval=timedelta(0), max_attempts=1)


def saga_with_pivot() -> Saga:
    return Saga(
        name="ops",
        steps=(
            Step(name="a", service="x", command="a", compensation="ua", retry=ONCE,
                 compensation_retry=ONCE),
            Step(name="b", service="x", command="b", compensation="ub", retry=ONCE,
                 compensation_retry=ONCE),
            Step(name="p", service="x", command="p", kind=StepKind.PIVOT, retry=ONCE),
            Step(name="r", service="x", command="r", kind=StepKind.RETRIABLE, retry=ONCE),
        ),
    )  # fmt: skip


def act(defn: Saga, state: engine.SagaState, action: Action, **kw: object) -> engine.Decision:
    engine.on_action(defn, state, action, actor="ops@x", reason="because", now_ms=NOW, **kw)  # type: ignore[arg-type]
    return engine.decide(defn, state, NOW)


def test_resolve_a_stuck_compensation_by_hand_then_the_rest_compensates() -> None:
    defn = saga_with_pivot()
    ok, no, down = Reply.succeeded(), Reply.rejected("no", "no"), Reply.failed("db", "down")
    state, _ = run_script(defn, [ok, ok, no, down])  # b's compensation fails once: stuck
    assert state.status is SagaStatus.STUCK
    assert engine.health(state) is Health.STUCK
    assert engine.refusal(defn, state, Action.SKIP) == "no failed forward step to skip"
    decision = act(defn, state, Action.RESOLVE)
    assert state.steps["b"].compensated
    (next_command,) = decision.commands
    assert (next_command.step, next_command.direction) == ("a", Direction.COMPENSATE)
    audit = [e for e in decision.events if e.type is EventType.OPERATOR_ACTION]
    assert audit == []  # the audit entry was returned by on_action, before decide


def test_dry_run_of_cancel_lists_compensations_in_order_and_changes_nothing() -> None:
    defn = saga_with_pivot()
    state, _ = run_script(defn, [Reply.succeeded(), Reply.succeeded()])  # p in flight
    before = state.copy()
    with pytest.raises(StateError, match="pivot was sent"):
        engine.preview(defn, state, Action.CANCEL, actor="o", reason="r", now_ms=NOW)
    extra = Step(name="c", service="x", command="c", compensation="uc")
    defn2 = Saga(name="ops2", steps=(*defn.steps[:2], extra))
    state2, _ = run_script(defn2, [Reply.succeeded(), Reply.succeeded()])  # c in flight
    snapshot = state2.copy()
    preview = engine.preview(defn2, state2, Action.CANCEL, actor="o", reason="r", now_ms=NOW)
    assert preview.compensations == ["c", "b", "a"]
    assert preview.status is SagaStatus.COMPENSATING
    assert preview.events[0].type is EventType.OPERATOR_ACTION
    assert preview.events[0].data["actor"] == "o"
    assert [(c.step, c.direction) for c in preview.commands] == [("c", Direction.COMPENSATE)]
    assert state2 == snapshot
    assert state == before


def test_force_forward_takes_an_unknown_pivot_as_done() -> None:
    defn = saga_with_pivot()
    ok = Reply.succeeded()
    state, _ = run_script(defn, [ok, ok, Reply.failed("t", "timeout")])
    assert state.stuck is not None
    assert state.stuck["code"] == "pivot_unknown"
    assert engine.refusal(defn, state, Action.CANCEL) is not None  # may have committed
    decision = act(defn, state, Action.FORCE_FORWARD)
    assert state.pivot_passed
    assert [c.step for c in decision.commands] == ["r"]


def test_force_forward_past_the_pivot_retries_without_limit() -> None:
    defn = saga_with_pivot()
    ok, down = Reply.succeeded(), Reply.failed("x", "down")
    state, _ = run_script(defn, [ok, ok, ok, down])
    assert state.stuck is not None
    assert state.stuck["code"] == "retries_exhausted"
    decision = act(defn, state, Action.FORCE_FORWARD)
    (again,) = decision.commands
    events = engine.on_reply(defn, state, again, down, NOW)
    decision = engine.decide(defn, state, NOW)
    assert events[0].type is EventType.STEP_FAILED
    assert state.stuck is None  # ONCE no longer limits it
    assert engine.health(state) is Health.NEEDS_ATTENTION


def test_skip_a_failed_post_pivot_step_with_a_result_completes() -> None:
    defn = saga_with_pivot()
    ok, down = Reply.succeeded(), Reply.failed("x", "down")
    state, _ = run_script(defn, [ok, ok, ok, down])
    act(defn, state, Action.SKIP, result={"shipped_by": "hand"})
    assert state.status is SagaStatus.COMPLETED
    assert state.steps["r"].result == {"shipped_by": "hand"}


def test_retry_reschedules_a_waiting_step_now_and_refuses_otherwise() -> None:
    defn = Saga(name="w", steps=(
        Step(name="a", service="x", command="a", compensation="ua",
             retry=RetryPolicy(initial_interval=timedelta(seconds=20), max_attempts=3)),
    ))  # fmt: skip
    state, _ = run_script(defn, [Reply.failed("x", "down")])
    assert engine.health(state) is Health.WAITING
    decision = act(defn, state, Action.RETRY)
    (again,) = decision.commands
    assert again.attempt == 2
    assert engine.health(state) is Health.RETRYING
    assert engine.refusal(defn, state, Action.RETRY) is not None


def test_actions_need_a_reason_and_final_sagas_refuse_all() -> None:
    defn = saga_with_pivot()
    state, _ = run_script(defn, [Reply.succeeded()])
    with pytest.raises(StateError, match="reason"):
        engine.on_action(defn, state, Action.CANCEL, actor="o", reason=" ", now_ms=NOW)
    ok = Reply.succeeded()
    done, _ = run_script(defn, [ok, ok, ok, ok])
    assert done.status is SagaStatus.COMPLETED
    for action in Action:
        assert engine.refusal(defn, done, action) == "saga is already completed"
