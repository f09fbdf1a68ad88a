"""The domain rules on the state: failing, needs attention, pivot pending, step kinds, replay
errors. Each is one property read by health, the operator actions and SagaResult alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga import engine
from saga.coordinator.result import result_of
from saga.definition import RetryPolicy, Saga, Step, StepKind
from saga.engine import Action, Phase
from saga.errors import StateError
from saga.events import Event, EventType, Health
from saga.protocol import Direction, Reply
from tests.engine.test_scenarios import T0, run_script

THREE = RetryPolicy(initial_interval=timedelta(milliseconds=10), max_attempts=3)


def pivot_then_retriable() -> Saga:
    return Saga(
        name="rules",
        steps=(
            Step(name="a", service="x", command="a", compensation="ua"),
            Step(name="p", service="x", command="p", kind=StepKind.PIVOT),
            Step(name="r", service="x", command="r", kind=StepKind.RETRIABLE, retry=THREE),
        ),
    )


def test_a_post_pivot_retry_in_flight_needs_attention_everywhere() -> None:
    """Health, SagaResult and the operator actions read one rule: a retry of a failing
    post-pivot step is still failing while it is in flight (not only while it waits)."""
    defn = pivot_then_retriable()
    ok = Reply.succeeded()
    state, _ = run_script(defn, [ok, ok, Reply.failed("db", "down")])
    pointer = state.pointer
    assert pointer is not None
    assert pointer.phase is Phase.WAITING
    assert state.needs_attention
    assert result_of(state).needs_attention
    assert engine.health(state) is Health.NEEDS_ATTENTION

    decision = engine.decide(defn, state, T0 + 1000)  # the back-off ends: attempt 2 goes out
    (retry,) = decision.commands
    assert (retry.step, retry.attempt, pointer.phase) == ("r", 2, Phase.IN_FLIGHT)
    assert pointer.failing
    assert state.failing
    assert engine.health(state) is Health.NEEDS_ATTENTION
    assert state.needs_attention
    assert result_of(state).needs_attention
    assert engine.refusal(defn, state, Action.SKIP) is None
    assert engine.refusal(defn, state, Action.FORCE_FORWARD) is None

    engine.on_reply(defn, state, retry, ok, T0 + 1001)
    engine.decide(defn, state, T0 + 1001)
    assert not state.needs_attention
    assert not result_of(state).needs_attention
    assert engine.health(state) is None


def test_a_first_attempt_in_flight_is_not_failing() -> None:
    defn = pivot_then_retriable()
    state, _ = run_script(defn, [Reply.succeeded(), Reply.succeeded()])
    assert state.pointer is not None
    assert state.pointer.step == "r"
    assert not state.failing
    assert not state.needs_attention
    assert engine.health(state) is Health.PROGRESSING
    assert engine.refusal(defn, state, Action.SKIP) == "no failed forward step to skip"


def test_the_pivot_is_pending_while_its_outcome_is_unknown() -> None:
    defn = pivot_then_retriable()
    state, _ = run_script(defn, [Reply.succeeded()])
    pointer = state.pointer
    assert pointer is not None
    assert pointer.kind is StepKind.PIVOT  # an enum, not the string "pivot"
    assert state.pivot_pending
    assert state.at_pivot
    assert "outcome is not known" in (engine.refusal(defn, state, Action.CANCEL) or "")
    assert engine.refusal(defn, state, Action.FORCE_FORWARD) is None

    pivot = next(iter(engine.in_flight(state)), None)
    assert pivot is not None
    assert pivot.direction is Direction.FORWARD
    engine.on_reply(defn, state, pivot, Reply.succeeded(), T0)
    assert state.pivot_passed
    assert not state.pivot_pending
    assert not state.at_pivot


def test_step_kinds_are_read_back_as_enums() -> None:
    defn = pivot_then_retriable()
    state, _ = run_script(defn, [])
    assert state.pointer is not None
    assert state.pointer.kind is StepKind.COMPENSATABLE
    state, _ = run_script(defn, [Reply.succeeded(), Reply.succeeded()])
    assert state.pointer is not None
    assert state.pointer.kind is StepKind.RETRIABLE


def _event(seq: int, type_: EventType, **data: object) -> Event:
    return Event(saga_id="s1", seq=seq, type=type_, data=dict(data), at_ms=T0 + seq)


STARTED = _event(1, EventType.SAGA_STARTED, name="rules", version=1, input={})


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([], "no events"),
        ([_event(1, EventType.SAGA_COMPLETED)], "first event"),
        ([STARTED, _event(3, EventType.SAGA_COMPLETED)], "gap in log at seq 3"),
    ],
)
def test_a_log_that_cannot_be_replayed_is_a_state_error(events: list[Event], message: str) -> None:
    with pytest.raises(StateError, match=message):
        engine.replay(events)


def test_an_unreadable_event_is_a_state_error_with_its_cause() -> None:
    sent = _event(
        2, EventType.STEP_SENT, step="a", direction="sideways", attempt=1, service="x",
        command="a", payload={}, timeout_at_ms=T0,
    )  # fmt: skip
    with pytest.raises(StateError, match="event 2") as caught:
        engine.replay([STARTED, sent])
    assert isinstance(caught.value.__cause__, ValueError)
    assert caught.value.saga_id == "s1"
